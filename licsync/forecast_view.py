"""The seat forecast of a tenant or catalog, from the daily ledger (read) — and its mail.

``forecast_for`` reads the daily ledger (``ledger_snapshot``: one row per tenant, day and catalog,
``catalog_id ''`` for the tenant) over the forecast window, adds today's live figure (the seats and
consumed the seat model gives — ``status.forecast`` and ``reseat`` pass them in, read once), and
hands them to the pure ``licsync.forecast``. ``announce`` queues the ``seats_forecast`` mail when the
date comes within ``[notifications] forecast_days`` — once per crossing — after each sync cycle.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from licsync import ledger
from licsync.config import Settings
from licsync.db.models import Catalog, LedgerSnapshot
from licsync.errors import NotFound
from licsync.forecast import WINDOW_DAYS, forecast
from licsync.notify import events
from licsync.notify.audience import load_figures

_L = LedgerSnapshot.__table__  # type: ignore[attr-defined]
_C = Catalog.__table__  # type: ignore[attr-defined]


def ledger_history(session: Session, tenant: str, since: date, catalog_id: str = "") -> list[tuple[date, int]]:
    """``(day, consumed)`` of the daily ledger from ``since`` on, oldest first."""
    q = (select(_L.c.day, _L.c.consumed)
         .where(_L.c.tenant == tenant, _L.c.catalog_id == catalog_id, _L.c.day >= since.isoformat())
         .order_by(_L.c.day))
    return [(date.fromisoformat(d), int(c)) for d, c in session.connection().execute(q)]


def forecast_from(session: Session, tenant: str, now: datetime, *, purchased: int, consumed: int,
                  catalog: str | None = None) -> dict[str, Any]:
    """SPEC §5's forecast object for the tenant, or for one catalog (its consumed against the tenant's
    seats). ``purchased``/``consumed``: the tenant's figures from its seat model."""
    if catalog is not None:
        counts = ledger.catalog_consumed(session, tenant, catalog)
        if catalog not in counts and not _catalog_exists(session, tenant, catalog):
            raise NotFound(f"tenant {tenant!r} has no catalog {catalog!r}")
        consumed = counts.get(catalog, 0)
    today = now.date()
    history = ledger_history(session, tenant, today - timedelta(days=WINDOW_DAYS), catalog or "")
    history = [p for p in history if p[0] < today] + [(today, consumed)]
    out = forecast(history, purchased, consumed, today).as_json(tenant)
    return out | ({"catalog": catalog} if catalog is not None else {})


def _catalog_exists(session: Session, tenant: str, catalog: str) -> bool:
    q = select(_C.c.id).where(_C.c.tenant == tenant, _C.c.id == catalog)
    return session.connection().execute(q).first() is not None


def announce(session: Session, settings: Settings, tenant: str, now: datetime, *, purchased: int,
             consumed: int) -> int:
    """Queue ``seats_forecast`` on a crossing into the warning window (not once the seats are reached:
    the grace mails speak then)."""
    f = forecast_from(session, tenant, now, purchased=purchased, consumed=consumed)
    runs_out = f["runs_out_on"]
    soon = (runs_out is not None and f["consumed"] < f["seats"]
            and (date.fromisoformat(runs_out) - now.date()).days <= settings.notifications.forecast_days)
    return events.seats_forecast(session, settings, tenant, forecast=f, within=soon, now=now,
                                 figures=load_figures(session, tenant, purchased=purchased, consumed=consumed))



