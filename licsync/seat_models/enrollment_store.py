"""Database adapter of the ``enrollment`` model (LMS365 / Learn365): load its facts and plan.

``plan_for`` reads the facts of the users a step touched (in chunks, so a full reconcile of a large
tenant does not hold the tenant in memory) and hands them to the pure ``licsync.seats.plan``. A
full reconcile reads the tenant in one streamed query (:func:`tenant_holders`) and keeps only the
changes, so its memory grows with the seats taken or freed, not with the tenant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, literal, select, union
from sqlmodel import Session

from licsync.db.models import Activation, Course, DirectoryUser, Enrollment, LearnerListEntry, Seat
from licsync.ledger import CHUNK, FULL, chunks, waitlist
from licsync.seats import Account, EnrollmentFact, Holder, Limits, Plan, plan

_S = Seat.__table__  # type: ignore[attr-defined]
_U = DirectoryUser.__table__  # type: ignore[attr-defined]
_E = Enrollment.__table__  # type: ignore[attr-defined]
_CO = Course.__table__  # type: ignore[attr-defined]
_L = LearnerListEntry.__table__  # type: ignore[attr-defined]
_A = Activation.__table__  # type: ignore[attr-defined]


def _candidates(tenant: str) -> Any:
    return union(
        select(_S.c.holder.label("h")).where(_S.c.tenant == tenant, _S.c.released_at.is_(None)),
        select(_E.c.user_id.label("h")).where(_E.c.tenant == tenant, _E.c.role == "learner"),
        select(_A.c.identity_id.label("h")).where(_A.c.tenant == tenant),
    )


def _enrollment_kinds(tenant: str, *, first: bool = False) -> Any:
    """One row per user, catalog, course status, role and learner-list membership (see load_holders)."""
    listed = _L.c.user_id.is_not(None)
    cols = [
        _E.c.user_id,
        _CO.c.catalog_id,
        func.min(_E.c.course_id).label("course_id"),
        _CO.c.status,
        _E.c.role,
        listed.label("listed"),
    ]
    if first:
        cols.append(func.min(_E.c.enrolled_at).label("first"))
    return (
        select(*cols)
        .select_from(
            _E.join(_CO, and_(_CO.c.tenant == _E.c.tenant, _CO.c.id == _E.c.course_id)).outerjoin(
                _L, and_(_L.c.tenant == _E.c.tenant, _L.c.catalog_id == _CO.c.catalog_id, _L.c.user_id == _E.c.user_id)
            )
        )
        .where(_E.c.tenant == tenant)
        .group_by(_E.c.user_id, _CO.c.catalog_id, _CO.c.status, _E.c.role, listed)
    )


def load_holders(session: Session, tenant: str, ids: list[str], *, order: bool = False) -> list[Holder]:
    """The facts of these users, in a handful of queries per chunk.

    ``order`` also loads each user's first enrolment, which orders the takes only when seats can
    be refused (overage ``block``); skipping it spares a datetime per enrolment on large plans.

    Enrollments come as one fact per catalog, course status, role and learner-list membership
    (the course is the first of its kind): these are all the rules read, and a learner enrolled
    in many courses of one catalog costs one row instead of many.
    """
    if not ids:
        return []
    conn = session.connection()
    accounts = {
        r[0]: Account(enabled=r[1], deleted=r[2])
        for r in conn.execute(
            select(_U.c.id, _U.c.account_enabled, _U.c.deleted).where(_U.c.tenant == tenant, _U.c.id.in_(ids))
        )
    }
    enrollments: dict[str, list[EnrollmentFact]] = defaultdict(list)
    first_enrolled: dict[str, datetime] = {}
    for uid, cat, course, status, role, on_list, *first in conn.execute(
        _enrollment_kinds(tenant, first=order).where(_E.c.user_id.in_(ids))
    ):
        enrollments[uid].append(EnrollmentFact(cat, course, status, role, bool(on_list)))
        if first and first[0] is not None and role == "learner":
            first_enrolled[uid] = min(first[0], first_enrolled.get(uid, first[0]))
    holding: set[str] = set()
    last_release: dict[str, tuple[datetime, str]] = {}
    for holder, released, reason in conn.execute(
        select(_S.c.holder, _S.c.released_at, _S.c.release_reason).where(_S.c.tenant == tenant, _S.c.holder.in_(ids))
    ):
        if released is None:
            holding.add(holder)
        elif holder not in last_release or released > last_release[holder][0]:
            last_release[holder] = (released, reason)
    activations = {
        r[0]: r[1] is None
        for r in conn.execute(
            select(_A.c.identity_id, _A.c.deactivated_at).where(_A.c.tenant == tenant, _A.c.identity_id.in_(ids))
        )
    }
    return [
        Holder(
            holder_id=uid,
            account=accounts.get(uid),
            enrollments=_sorted(enrollments.get(uid, ())),
            activated=activations.get(uid),
            holds_seat=uid in holding,
            # what freed their last seat, for those without one (RESTORED needs no more)
            last_release_reason=last_release[uid][1] if uid in last_release and uid not in holding else None,
            first_enrolled_at=first_enrolled.get(uid),
        )
        for uid in ids
    ]


def _sorted(facts: Iterable[EnrollmentFact]) -> tuple[EnrollmentFact, ...]:
    return tuple(sorted(facts, key=lambda e: (e.catalog_id, e.course_id, e.role)))


def tenant_holders(session: Session, tenant: str, *, order: bool = False) -> Iterator[Holder]:
    """The facts of every candidate of the tenant (a full reconcile), in one streamed query.

    The database joins the candidates to their account, enrollment kinds, open seat, last release
    and activation with whole-table joins, and hands back one row per candidate and kind of
    enrollment, ordered by candidate; rows are grouped here by equality. Nothing of the tenant is
    held in Python beyond one candidate. (At 100k users on PostgreSQL, the 41 chunked queries this
    replaced took 3.3 s of server time; the whole full reconcile went from 14.3 s to 5.8 s.)
    """
    cand = _candidates(tenant).subquery("cand")
    kinds = _enrollment_kinds(tenant, first=order).subquery("kinds")
    held = _S.alias("held")
    last = (
        select(_S.c.release_reason)
        .where(_S.c.tenant == tenant, _S.c.holder == cand.c.h, _S.c.released_at.is_not(None))
        .order_by(_S.c.released_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    q = (
        select(
            cand.c.h,
            _U.c.id.is_not(None),
            _U.c.account_enabled,
            _U.c.deleted,
            kinds.c.catalog_id,
            kinds.c.course_id,
            kinds.c.status,
            kinds.c.role,
            kinds.c.listed,
            kinds.c.first if order else literal(None),
            held.c.id.is_not(None),
            case((held.c.id.is_(None), last), else_=None),
            _A.c.identity_id.is_not(None),
            _A.c.deactivated_at.is_(None),
        )
        .select_from(
            cand.outerjoin(_U, and_(_U.c.tenant == tenant, _U.c.id == cand.c.h))
            .outerjoin(kinds, kinds.c.user_id == cand.c.h)
            .outerjoin(held, and_(held.c.tenant == tenant, held.c.holder == cand.c.h, held.c.released_at.is_(None)))
            .outerjoin(_A, and_(_A.c.tenant == tenant, _A.c.identity_id == cand.c.h))
        )
        .order_by(cand.c.h)
    )
    rows = session.connection().execute(q, execution_options={"stream_results": True, "yield_per": CHUNK})
    current: str | None = None
    head: Any = None
    facts: list[EnrollmentFact] = []
    first: datetime | None = None

    def holder() -> Holder:
        _h, known, enabled, deleted = head[:4]
        return Holder(
            holder_id=current,  # type: ignore[arg-type]
            account=Account(enabled=enabled, deleted=deleted) if known else None,
            enrollments=_sorted(facts),
            activated=head[13] if head[12] else None,
            holds_seat=head[10],
            last_release_reason=head[11],
            first_enrolled_at=first,
        )

    for row in rows:
        if row[0] != current:
            if current is not None:
                yield holder()
            current, head, facts, first = row[0], row, [], None
        if row[7] is not None:  # an enrollment kind
            facts.append(EnrollmentFact(row[4], row[5], row[6], row[7], bool(row[8])))
            if row[9] is not None and row[7] == "learner" and (first is None or row[9] < first):
                first = row[9]
    if current is not None:
        yield holder()


def plan_for(
    session: Session, tenant: str, ids: Iterable[str] | None, now: datetime, *, consumed: int, limits: Limits | None
) -> Plan:
    """Plan the seats of these users (``None``: every candidate of the tenant — a full reconcile).

    ``consumed`` is the tenant's open seats before the plan and ``limits`` the purchased seats and
    overage mode, both read once by the caller (``licsync.reseat``)."""
    order = limits is not None and limits.overage == "block"
    if ids is None:
        every = tenant_holders(session, tenant, order=order)
        return replace(plan(every, consumed_before=consumed, limits=limits, now=now, keep_ids=False),
                       considered_ids=FULL)
    source = list(ids)
    if order:
        # Users refused for want of a seat are first in line whenever this plan frees some.
        source += [h for h, _since in waitlist(session, tenant)]
    seen: set[str] = set()

    def holders() -> Iterator[Holder]:
        for chunk in chunks(source):
            fresh = [i for i in chunk if i not in seen]
            seen.update(fresh)
            yield from load_holders(session, tenant, fresh, order=order)

    return plan(holders(), consumed_before=consumed, limits=limits, now=now)
