"""Is this user licensed, and why: the access endpoint, its fast route and ``explain`` — one answer.

``access_decision`` is the platform's launch-time check: two indexed reads in one statement (the
open seat row, the active subscription joined with its grace row) on the common path, and the
tenant's seat model only where its seats are not seat rows (role pools, first-access ids).
``explain_user`` asks the same function, then adds the diagnosis: the rule that decided, with its
reason code and date (``SeatModel.standing``). Both take a user id or a user principal name.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import and_, bindparam, literal, select, true
from sqlmodel import Session

from licsync import users
from licsync.access import decide
from licsync.db.models import GraceState, Seat, Subscription
from licsync.seat_models.models import model_of
from licsync.subscriptions import grace as grace_mod
from licsync.subscriptions import keys, registry
from licsync.subscriptions.grace import GraceRecord
from licsync.subscriptions.terms import Terms

_S = Seat.__table__  # type: ignore[attr-defined]
_SUB = Subscription.__table__  # type: ignore[attr-defined]
_G = GraceState.__table__  # type: ignore[attr-defined]

# Core statements, compiled once and cached by SQLAlchemy: the ORM's identity map and attribute
# instrumentation cost more than the indexed reads themselves on this path.
_SEAT_Q = select(_S.c.acquired_at).where(
    _S.c.tenant == bindparam("t"), _S.c.holder == bindparam("u"), _S.c.released_at.is_(None))
_SUB_Q = (
    select(_SUB.c.key, _G.c.state, _G.c.reason, _G.c.started_at, _G.c.ends_at, _SUB.c.grace_days)
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
    _ACTIVE.c.started_at, _ACTIVE.c.ends_at, _ACTIVE.c.grace_days,
).select_from(select(literal(1).label("one")).subquery("one").outerjoin(_ACTIVE, true()))


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


@lru_cache(maxsize=256)
def _terms(key: str) -> Terms:
    """Terms of a stored key (verified when it was activated); keys are immutable, so cache them."""
    return keys.read_unverified(key)


def access_decision(session: Session, tenant: str, user: str, now: datetime) -> dict[str, Any]:
    """``{"licensed", "reason"}`` (the contract) plus ``user_id``, ``holds_seat``, ``since``, ``sentence``."""
    user_id = users.resolve(session, tenant, user)
    row = session.connection().execute(_DECISION_Q, {"t": tenant, "u": user_id}).one()
    seat_row_since, found = row[0], (None if row[1] is None else row[1:])
    if found is None:  # rare, off the hot path: says whether it was deactivated (moved) or never active
        terms, record = None, grace_mod.NO_GRACE
        state = registry.subscription_summary(session, tenant, now)["state"]
    else:
        terms = registry.with_grace_days(_terms(found[0]), found[5])
        record = grace_mod.NO_GRACE if found[1] is None else GraceRecord(found[1], found[2], found[3], found[4])
        state = "expired" if terms.expired(now) else "active"  # = registry.subscription_state for an active row
    model = model_of(None if terms is None else terms.policy)
    since = model.seat_since(session, tenant, user_id, seat_row_since)
    holds = since is not None
    rank = None
    if terms is not None:
        terms = model.effective_terms(session, tenant, terms)  # purchased seats: pools, a tier upgrade
    if holds and terms is not None and grace_mod.effective(terms, record, now).state == "enforced":
        rank = registry.seat_rank(session, tenant, user_id) or 1
    d = decide(holds, rank, record, terms, state, now, seat_on_first_use=model.seat_on_first_use)
    return {
        "licensed": d.licensed,
        "reason": d.reason,
        "user_id": user_id,
        "holds_seat": holds,
        "since": _iso(since) if holds else None,
        "sentence": d.sentence,
    }


def explain_user(session: Session, tenant: str, user: str, now: datetime) -> dict[str, Any]:
    """Does this user hold a seat, are they licensed, and the rule that decided (SPEC §2, §5 ``explain``).

    ``licensed`` and ``reason`` are the access endpoint's answer, verbatim; ``seat_reason`` is the
    seat model's deciding rule (``enrolled``, ``seat_limit``, ``all_enrollments_expired``,
    ``reuse_limit``, ``pool_full``, ``no_subscription``, …) and ``seat_reason_since`` its date."""
    decision = access_decision(session, tenant, user, now)
    user_id = decision["user_id"]
    found = registry.active_subscription(session, tenant)
    terms = None if found is None else found[1]
    model = model_of(None if terms is None else terms.policy)
    st = model.standing(session, tenant, terms, user_id, now)
    seat_reason, seat_sentence, rule_since = st.reason, st.sentence, st.since
    if terms is None and not st.holds_seat:
        seat_reason, seat_sentence = "no_subscription", decision["sentence"]
    rank = registry.seat_rank(session, tenant, user_id) if decision["reason"] in (
        "beyond_seat_limit", "within_seat_limit") else None
    out: dict[str, Any] = {
        "user_id": user_id,
        "holds_seat": decision["holds_seat"],
        "licensed": decision["licensed"],
        "reason": decision["reason"],
        "since": decision["since"],
        "sentence": decision["sentence"],
        "seat_reason": seat_reason,
        "seat_reason_since": _iso(rule_since),
        "seat_sentence": seat_sentence,
        "qualifies_now": st.qualifies_now,
        "seat_rank": rank,
        "model": model.policy,
    }
    if user_id != user:
        out["given"] = user
    for k, v in st.detail.items():
        out[k] = _iso(v) if isinstance(v, datetime) else v
    return out
