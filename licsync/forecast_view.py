"""The seat forecast of a tenant or catalog, from the daily ledger (read) — and its mail.

``forecast_for`` reads the daily ledger (``ledger_snapshot``: one row per tenant, day and catalog,
``catalog_id ''`` for the tenant) over the forecast window, adds today's live figure (the seats and
consumed that ``status`` shows, from ``status.seat_figures``), and hands them to the pure
``licsync.forecast``. ``announce`` queues the ``seats_forecast`` mail when the date comes within
``[notifications] forecast_days`` — once per crossing — and is called after each sync cycle.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from licsync import status
from licsync.config import Settings
from licsync.db.models import LedgerSnapshot
from licsync.errors import NotFound
from licsync.forecast import WINDOW_DAYS, forecast
from licsync.notify import events

_L = LedgerSnapshot.__table__  # type: ignore[attr-defined]


def ledger_history(session: Session, tenant: str, since: date, catalog_id: str = "") -> list[tuple[date, int]]:
    """``(day, consumed)`` of the daily ledger from ``since`` on, oldest first."""
    q = (select(_L.c.day, _L.c.consumed)
         .where(_L.c.tenant == tenant, _L.c.catalog_id == catalog_id, _L.c.day >= since.isoformat())
         .order_by(_L.c.day))
    return [(date.fromisoformat(d), int(c)) for d, c in session.connection().execute(q)]


def forecast_for(session: Session, tenant: str, now: datetime, catalog: str | None = None) -> dict[str, Any]:
    """SPEC §5's forecast object for the tenant, or for one catalog (its consumed against the tenant's seats)."""
    figures = status.seat_figures(session, tenant, now)
    consumed = figures["consumed"]
    if catalog is not None:
        rows = status.catalog_rows(session, tenant, catalog)
        if not rows:
            raise NotFound(f"tenant {tenant!r} has no catalog {catalog!r}")
        consumed = rows[0]["consumed"]
    today = now.date()
    history = ledger_history(session, tenant, today - timedelta(days=WINDOW_DAYS), catalog or "")
    history = [p for p in history if p[0] < today] + [(today, consumed)]
    out = forecast(history, figures["purchased"], consumed, today).as_json(tenant)
    return out | ({"catalog": catalog} if catalog is not None else {})


def announce(session: Session, settings: Settings, tenant: str, now: datetime) -> int:
    """Queue ``seats_forecast`` on a crossing into the warning window (not once the seats are reached:
    the grace mails speak then)."""
    f = forecast_for(session, tenant, now)
    runs_out = f["runs_out_on"]
    soon = (runs_out is not None and f["consumed"] < f["seats"]
            and (date.fromisoformat(runs_out) - now.date()).days <= settings.notifications.forecast_days)
    return events.seats_forecast(session, settings, tenant, forecast=f, within=soon, now=now)



