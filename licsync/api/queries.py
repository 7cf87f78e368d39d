"""Read queries the API needs beyond ``licsync.status``: the hot-path access decision, seat
holders for CSV export, ledger history for the chart. Read-only, like ``status``.

``access_decision`` does what ``service.explain_user`` does minus the diagnosis (re-planning the
user, the last release): the platform asks it at every course launch, so it is held to two or three
indexed reads — the open seat, the active subscription, its grace row — plus the seat's rank only
while seat-limit enforcement is in force. The decision itself is the pure ``access.decide``, the
same function ``explain`` uses, so both always agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import and_, bindparam, literal, select, true
from sqlmodel import Session

from licsync import status
from licsync.access import decide
from licsync.db.models import (
    DirectoryUser,
    GraceState,
    LedgerSnapshot,
    Seat,
    SeatCatalog,
    Subscription,
)
from licsync.seats import describe
from licsync.subscriptions import grace as grace_mod
from licsync.subscriptions import keys, registry
from licsync.subscriptions.grace import GraceRecord
from licsync.subscriptions.terms import Terms

_S = Seat.__table__  # type: ignore[attr-defined]
_SC = SeatCatalog.__table__  # type: ignore[attr-defined]
_U = DirectoryUser.__table__  # type: ignore[attr-defined]
_LS = LedgerSnapshot.__table__  # type: ignore[attr-defined]
_SUB = Subscription.__table__  # type: ignore[attr-defined]
_G = GraceState.__table__  # type: ignore[attr-defined]


# Core statements, compiled once and cached by SQLAlchemy: the ORM's identity map and attribute
# instrumentation cost more than the indexed reads themselves on this path.
_SEAT_Q = select(_S.c.acquired_at).where(
    _S.c.tenant == bindparam("t"), _S.c.holder == bindparam("u"), _S.c.released_at.is_(None))
_SUB_Q = (
    select(_SUB.c.key, _G.c.state, _G.c.reason, _G.c.started_at, _G.c.ends_at)
    .select_from(_SUB.outerjoin(_G, and_(_G.c.tenant == _SUB.c.tenant, _G.c.subscription_id == _SUB.c.id)))
    .where(_SUB.c.tenant == bindparam("t"), _SUB.c.state == "active")
    .order_by(_SUB.c.activated_at.desc())
    .limit(1)
)
# Both reads as one statement, one row always (the subscription columns null when there is none):
# on PostgreSQL each statement is a round trip, and under load a round trip is the cost.
_ACTIVE = _SUB_Q.subquery("active")
_DECISION_Q = select(
    _SEAT_Q.scalar_subquery().label("since"), _ACTIVE.c.key, _ACTIVE.c.state, _ACTIVE.c.reason,
    _ACTIVE.c.started_at, _ACTIVE.c.ends_at,
).select_from(select(literal(1).label("one")).subquery("one").outerjoin(_ACTIVE, true()))


@lru_cache(maxsize=256)
def _terms(key: str) -> Terms:
    """Terms of a stored key (verified when it was activated); keys are immutable, so cache them."""
    return keys.read_unverified(key)


def access_decision(session: Session, tenant: str, user_id: str, now: datetime) -> dict[str, Any]:
    """``{"licensed", "reason"}`` (the contract) plus ``user_id``, ``holds_seat``, ``since``, ``sentence``.

    Two indexed reads in one statement: the open seat, and the active subscription joined with its
    grace row."""
    row = session.connection().execute(_DECISION_Q, {"t": tenant, "u": user_id}).one()
    since, found = row[0], (None if row[1] is None else row[1:])
    if found is None:  # rare, off the hot path: says whether it was deactivated (moved) or never active
        terms, record = None, grace_mod.NO_GRACE
        state = registry.subscription_summary(session, tenant, now)["state"]
    else:
        terms = _terms(found[0])
        record = grace_mod.NO_GRACE if found[1] is None else GraceRecord(found[1], found[2], found[3], found[4])
        state = "expired" if terms.expired(now) else "active"  # = registry.subscription_state for an active row
    holds = since is not None
    rank = None
    if holds and terms is not None and grace_mod.effective(terms, record, now).state == "enforced":
        rank = registry.seat_rank(session, tenant, user_id)
    d = decide(holds, rank, record, terms, state, now)
    return {
        "licensed": d.licensed,
        "reason": d.reason,
        "user_id": user_id,
        "holds_seat": holds,
        "since": status._iso(since) if holds else None,
        "sentence": d.sentence,
    }


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
