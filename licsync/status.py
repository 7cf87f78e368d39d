"""Read models: seat status (the contract's JSON), explanations of one user, held mass frees.

Read-only: nothing here writes. The CLI and the API print what these functions return.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlmodel import Session

from licsync import reseat
from licsync.config import Settings
from licsync.db.models import Catalog, CatalogCount, DirectoryUser, MassFreeHold, Seat
from licsync.errors import NotFound
from licsync.forecast_view import forecast_from
from licsync.seat_models.models import for_tenant
from licsync.seats import describe
from licsync.subscriptions import registry
from licsync.subscriptions.grace import days_left

_C = Catalog.__table__  # type: ignore[attr-defined]
_CC = CatalogCount.__table__  # type: ignore[attr-defined]


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


def grace_view(session: Session, tenant: str, now: datetime) -> dict[str, Any]:
    """The grace object of the status JSON, as of ``now`` (a window that closed shows enforced at once)."""
    g = registry.current_grace(session, tenant, now)
    return {
        "state": g.state,
        "reason": g.reason,
        "started_at": _iso(g.started_at),
        "ends_at": _iso(g.ends_at),
        "days_left": days_left(g, now),
    }


def catalog_rows(session: Session, tenant: str, catalog_id: str | None = None) -> list[dict[str, Any]]:
    """``[{"id", "name", "consumed"}]`` ordered by id: each catalog with the seat holders counted in it.

    One query, catalogs outer-joined with the counts every apply keeps (``catalog_count``, the
    table ``ledger.catalog_consumed`` reads), as Core rows. A tenant with 1,000 catalogs used to
    cost 1,000 ORM ``Catalog`` instances and a second 1,000-row query per status call: more than
    all the other queries of the call together."""
    consumed = func.coalesce(_CC.c.consumed, 0)
    q = (
        select(_C.c.id, _C.c.name, consumed)
        .select_from(_C.outerjoin(_CC, and_(_CC.c.tenant == _C.c.tenant, _CC.c.catalog_id == _C.c.id)))
        .where(_C.c.tenant == tenant)
    )
    if catalog_id is not None:
        q = q.where(_C.c.id == catalog_id)
    return [{"id": cid, "name": name, "consumed": n}
            for cid, name, n in session.connection().execute(q.order_by(_C.c.id))]


def seat_figures(session: Session, tenant: str, now: datetime) -> dict[str, Any]:
    """The tenant-wide seat pool: subscription, purchased, consumed, available, overage and grace —
    what the status JSON, the API, the dashboard and ``/metrics`` all show. The figures are the
    tenant's seat model's (``SeatModel.figures``: a tier upgrade and role pools included), the same
    the mails and the daily ledger take."""
    sub = registry.subscription_summary(session, tenant, now)
    _terms, _model, f = reseat.figures(session, tenant, now)
    purchased = f.purchased if sub["state"] in ("active", "expired") else 0
    return {
        "subscription": sub,
        "purchased": purchased,
        "consumed": f.consumed,
        "available": purchased - f.consumed,
        "overage": max(0, f.consumed - purchased),
        "grace": grace_view(session, tenant, now),
    }


def tenant_status(session: Session, tenant: str, now: datetime, settings: Settings | None = None) -> dict[str, Any]:
    """The contract's status JSON (SPEC §5), plus additive keys: grace.days_left, and ``model`` —
    what the subscription's counting model shows (reuses, tiers, billing, pools)."""
    terms, model = for_tenant(session, tenant)
    return {
        "tenant": tenant,
        **seat_figures(session, tenant, now),
        "catalogs": catalog_rows(session, tenant),
        "model": model.status_block(session, settings, tenant, terms, now),
        "forecast": forecast_for(session, tenant, now),
    }


def forecast_for(session: Session, tenant: str, now: datetime, catalog: str | None = None) -> dict[str, Any]:
    """When consumed reaches the seats at the present trend (SPEC §5 ``forecast``), from the daily
    ledger and the seat model's figures of now."""
    _terms, _model, f = reseat.figures(session, tenant, now)
    return forecast_from(session, tenant, now, purchased=f.purchased, consumed=f.consumed, catalog=catalog)


def catalog_status(session: Session, tenant: str, catalog_id: str, now: datetime) -> dict[str, Any]:
    rows = catalog_rows(session, tenant, catalog_id)
    if not rows:
        raise NotFound(f"tenant {tenant!r} has no catalog {catalog_id!r}")
    return rows[0]


def seat_of(session: Session, tenant: str, user_id: str) -> Seat | None:
    return session.exec(  # type: ignore[call-overload]
        select(Seat).where(Seat.tenant == tenant, Seat.holder == user_id, Seat.released_at.is_(None))  # type: ignore[union-attr]
    ).scalar_one_or_none()


def last_release(session: Session, tenant: str, user_id: str) -> Seat | None:
    return (
        session.exec(  # type: ignore[call-overload]
            select(Seat)
            .where(Seat.tenant == tenant, Seat.holder == user_id, Seat.released_at.is_not(None))  # type: ignore[union-attr]
            .order_by(Seat.released_at.desc())  # type: ignore[union-attr]
        )
        .scalars()
        .first()
    )


def directory_user(session: Session, tenant: str, user_id: str) -> DirectoryUser | None:
    return session.get(DirectoryUser, (tenant, user_id))


def holds(session: Session, tenant: str | None = None, *, pending_only: bool = True) -> list[dict[str, Any]]:
    q = select(MassFreeHold)
    if tenant:
        q = q.where(MassFreeHold.tenant == tenant)
    if pending_only:
        q = q.where(MassFreeHold.status == "pending")
    rows = session.exec(q.order_by(MassFreeHold.created_at)).scalars().all()  # type: ignore[call-overload]
    return [
        {
            "id": h.id,
            "tenant": h.tenant,
            "created_at": _iso(h.created_at),
            "frees": h.frees,
            "reason": h.reason,
            "status": h.status,
        }
        for h in rows
    ]


def reason_sentence(reason: str | None) -> str:
    return describe(reason) if reason else ""
