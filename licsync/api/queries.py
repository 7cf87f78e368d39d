"""Read queries the API needs beyond ``licsync.status``: the hot-path access decision, seat
holders for CSV export, ledger history for the chart. Read-only, like ``status``.

The access decision is ``licsync.service.access_decision`` (the same function ``explain`` asks),
so the endpoint, its fast route and ``explain`` always agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlmodel import Session

from licsync import status
from licsync.db.models import (
    DirectoryUser,
    GraceState,
    LedgerSnapshot,
    Seat,
    SeatCatalog,
    Subscription,
)
from licsync.seats import describe

_S = Seat.__table__  # type: ignore[attr-defined]
_SC = SeatCatalog.__table__  # type: ignore[attr-defined]
_U = DirectoryUser.__table__  # type: ignore[attr-defined]
_LS = LedgerSnapshot.__table__  # type: ignore[attr-defined]
_SUB = Subscription.__table__  # type: ignore[attr-defined]
_G = GraceState.__table__  # type: ignore[attr-defined]


def memberships(session: Session, tenant: str, scope: frozenset[str] | None) -> dict[str, list[str]]:
    """``{holder: [catalog ids]}`` from ``seat_catalog`` — the very rows the per-catalog counts are
    kept from, so an export always agrees with the figures — limited to ``scope`` when given."""
    q = select(_SC.c.holder, _SC.c.catalog_id).where(_SC.c.tenant == tenant)
    if scope is not None:
        q = q.where(_SC.c.catalog_id.in_(sorted(scope)))
    out: dict[str, list[str]] = defaultdict(list)
    for user_id, catalog_id in session.connection().execute(q):
        out[user_id].append(catalog_id)
    for cats in out.values():
        cats.sort()
    return out


def seat_holders(session: Session, tenant: str, scope: frozenset[str] | None) -> Iterator[dict[str, Any]]:
    """Open seats, oldest first, with the holder's directory facts and the seat's reason.

    With a catalog ``scope`` (a catalog admin), only holders enrolled in those catalogs, and only
    those catalogs are named: other catalogs of the tenant stay invisible."""
    member = memberships(session, tenant, scope)
    q = (
        select(_S.c.holder, _S.c.acquired_at, _S.c.acquire_reason, _U.c.upn, _U.c.display_name,
               _U.c.account_enabled, _U.c.deleted)
        .select_from(_S.outerjoin(_U, and_(_U.c.tenant == _S.c.tenant, _U.c.id == _S.c.holder)))
        .where(_S.c.tenant == tenant, _S.c.released_at.is_(None))
        .order_by(_S.c.acquired_at, _S.c.id)
    )
    for holder, acquired_at, reason, upn, name, enabled, deleted in session.connection().execute(q):
        cats = member.get(holder, [])
        if scope is not None and not cats:
            continue
        account = "unknown" if deleted is None else ("deleted" if deleted != "none" else
                                                     ("enabled" if enabled else "disabled"))
        acquired = acquired_at if isinstance(acquired_at, datetime) else None
        yield {
            "user_id": holder,
            "user_principal_name": upn or "",
            "display_name": name or "",
            "seat_since": status._iso(acquired) or "",
            "seat_reason": reason,
            "reason_sentence": describe(reason),
            "account": account,
            "catalogs": " ".join(cats),
        }


def ledger_history(session: Session, tenant: str, catalog_id: str = "", days: int = 90) -> list[dict[str, Any]]:
    """The last ``days`` daily snapshots, oldest first (catalog_id '' = the tenant's total)."""
    q = (
        select(_LS.c.day, _LS.c.purchased, _LS.c.consumed, _LS.c.available)
        .where(_LS.c.tenant == tenant, _LS.c.catalog_id == catalog_id)
        .order_by(_LS.c.day.desc())
        .limit(days)
    )
    rows = [
        {"day": d, "purchased": p, "consumed": c, "available": a}
        for d, p, c, a in session.connection().execute(q)
    ]
    rows.reverse()
    return rows
