"""The seat ledger: the books every seat model writes to and every face reads figures from.

Core adapter (below the seat models, above ``licsync.db``): it knows seats, the waiting line, the
per-catalog counts and the daily snapshot, and nothing of policies. ``apply_plan`` is the one
writer of seat rows: every seat model's plan reaches the database through it, from
``licsync.reseat``. Figures are read here once per step and handed down (``Counts``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from licsync.db import BULK_ROWS, analyze
from licsync.db.bulk import executemany, insert_rows
from licsync.db.models import (
    AuditLog,
    CatalogCount,
    Course,
    Enrollment,
    LearnerListEntry,
    LedgerSnapshot,
    Seat,
    SeatCatalog,
    SeatWaitlist,
)
from licsync.db.models_seat_models import SubscriptionUpgrade
from licsync.seats import Plan, SeatChange
from licsync.subscriptions.terms import Terms

CHUNK = 2000
FULL: tuple[str, ...] = ("*",)  # considered_ids of a full reconcile: every holder of the tenant

_S = Seat.__table__  # type: ignore[attr-defined]
_E = Enrollment.__table__  # type: ignore[attr-defined]
_CO = Course.__table__  # type: ignore[attr-defined]
_L = LearnerListEntry.__table__  # type: ignore[attr-defined]
_AU = AuditLog.__table__  # type: ignore[attr-defined]
_LS = LedgerSnapshot.__table__  # type: ignore[attr-defined]
_SC = SeatCatalog.__table__  # type: ignore[attr-defined]
_CC = CatalogCount.__table__  # type: ignore[attr-defined]
_W = SeatWaitlist.__table__  # type: ignore[attr-defined]
_UP = SubscriptionUpgrade.__table__  # type: ignore[attr-defined]


def consumed(session: Session, tenant: str) -> int:
    return (
        session.connection()
        .execute(select(func.count()).select_from(_S).where(_S.c.tenant == tenant, _S.c.released_at.is_(None)))
        .scalar_one()
    )


def chunks(ids: Iterable[str], size: int = CHUNK) -> Iterator[list[str]]:
    chunk: list[str] = []
    for i in ids:
        chunk.append(i)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def upgraded_seats(session: Session, tenant: str, subscription_id: str, year_start: datetime) -> int | None:
    """The seats an automatic upgrade (overage ``tiered``) moved this license year to, if any."""
    return (
        session.connection()
        .execute(
            select(func.max(_UP.c.to_seats)).where(
                _UP.c.tenant == tenant, _UP.c.subscription_id == subscription_id, _UP.c.year_start == year_start
            )
        )
        .scalar_one_or_none()
    )


def purchased_seats(session: Session, tenant: str, terms: Terms) -> int:
    """The key's seats, or the tier an automatic upgrade moved this license year to: from the upgrade
    on, that is the purchased count everywhere (SPEC §1)."""
    return max(terms.seats, upgraded_seats(session, tenant, terms.id, terms.starts_at) or 0)


def peak_consumed(session: Session, tenant: str, since: datetime, until: datetime) -> int:
    """The most seats held at once between two instants, by the daily ledger (the day's last figure)."""
    q = select(func.max(_LS.c.consumed)).where(
        _LS.c.tenant == tenant, _LS.c.catalog_id == "", _LS.c.day >= since.date().isoformat(),
        _LS.c.day <= until.date().isoformat())
    return int(session.connection().execute(q).scalar_one_or_none() or 0)


def waitlist(session: Session, tenant: str) -> list[tuple[str, datetime]]:
    """The users refused for want of a seat, first in line first: ``(holder, since)``."""
    q = select(_W.c.holder, _W.c.since).where(_W.c.tenant == tenant).order_by(_W.c.since, _W.c.holder)
    return [(r[0], r[1]) for r in session.connection().execute(q)]


def apply_plan(
    session: Session,
    tenant: str,
    p: Plan,
    now: datetime,
    *,
    cycle_id: int | None = None,
    actor: str = "licsync",
) -> None:
    """Write a plan: close freed seats, open taken ones, audit each change, refresh the per-catalog counts.

    Rows are built and written a slice at a time (``licsync.db.bulk``), so a first sync that takes
    hundreds of thousands of seats never holds them all as row dicts.
    """
    conn = session.connection()
    for part in _slices(p.frees):
        executemany(
            conn,
            update(_S)
            .where(_S.c.tenant == tenant, _S.c.holder == bindparam("b_holder"), _S.c.released_at.is_(None))
            .values(released_at=now, release_reason=bindparam("b_reason")),
            [{"b_holder": c.holder, "b_reason": str(c.reason)} for c in part],
        )
    for part in _slices(p.takes):
        insert_rows(
            conn,
            _S,
            [
                {
                    "tenant": tenant,
                    "holder": c.holder,
                    "acquired_at": now,
                    "acquire_reason": str(c.reason),
                    "cycle_id": cycle_id,
                }
                for c in part
            ],
        )
    actions = {"take": "seat_taken", "free": "seat_freed", "refuse": "seat_refused"}
    for part in _slices(p.changes()):
        insert_rows(
            conn,
            _AU,
            [
                {
                    "at": now,
                    "tenant": tenant,
                    "cycle_id": cycle_id,
                    "actor": actor,
                    "action": actions[c.action],
                    "subject": c.holder,
                    "detail": {"reason": str(c.reason)},
                }
                for c in part
            ],
        )
    if len(p.takes) + len(p.frees) >= BULK_ROWS:
        analyze(session, "seat")  # the catalog refresh below joins the seats just written
    considered = p.considered_ids or tuple(c.holder for c in p.changes())
    _update_waitlist(session, tenant, considered, p, now)
    refresh_catalogs(session, tenant, None if considered == FULL else considered)


def _slices(items: tuple[SeatChange, ...], size: int = 20_000) -> Iterator[tuple[SeatChange, ...]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def counting_catalogs(tenant: str, holders: list[str] | None) -> Any:
    """(catalog, holder) of open seats whose holder is counted in that catalog."""
    q = (
        select(_CO.c.catalog_id, _S.c.holder)
        .distinct()
        .select_from(
            _S.join(_E, and_(_E.c.tenant == _S.c.tenant, _E.c.user_id == _S.c.holder, _E.c.role == "learner"))
            .join(_CO, and_(_CO.c.tenant == _E.c.tenant, _CO.c.id == _E.c.course_id, _CO.c.status != "deleted"))
            .join(
                _L, and_(_L.c.tenant == _E.c.tenant, _L.c.catalog_id == _CO.c.catalog_id, _L.c.user_id == _E.c.user_id)
            )
        )
        .where(_S.c.tenant == tenant, _S.c.released_at.is_(None))
    )
    return q if holders is None else q.where(_S.c.holder.in_(holders))


def _update_waitlist(session: Session, tenant: str, considered: tuple[str, ...], p: Plan, now: datetime) -> None:
    """The plan decided afresh for everyone it considered: its refusals are the new waiting line."""
    conn = session.connection()
    if considered == FULL:
        conn.execute(delete(_W).where(_W.c.tenant == tenant))
    else:
        for chunk in chunks(dict.fromkeys(considered)):
            conn.execute(delete(_W).where(_W.c.tenant == tenant, _W.c.holder.in_(chunk)))
    if p.refused:
        conn.execute(insert(_W), [{"tenant": tenant, "holder": c.holder, "since": now} for c in p.refused])


def _with_tenant(q: Any, tenant: str) -> Any:
    """The (catalog, holder) query with the tenant as a third column, for INSERT … SELECT."""
    return q.add_columns(literal(tenant).label("tenant"))


def refresh_catalogs(session: Session, tenant: str, holders: Iterable[str] | None) -> None:
    """Bring ``seat_catalog`` and ``catalog_count`` up to date for these holders (None: all of them).

    Work is proportional to the holders given: their old rows are replaced by what their seats and
    enrollments say now, and each catalog's count moves by the difference.
    """
    conn = session.connection()
    if holders is None:
        conn.execute(delete(_SC).where(_SC.c.tenant == tenant))
        conn.execute(delete(_CC).where(_CC.c.tenant == tenant))
        # A full recount reads every row, so hash joins are right whatever the statistics say. With
        # statistics older than this transaction's writes (the first sync, seats just taken, below
        # BULK_ROWS) PostgreSQL guesses one row per table and nests four loops: cubic in the tenant
        # (measured: 1,200 users 220 s, against 1.2 s with this).
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
        conn.execute(
            insert(_SC).from_select(
                ["catalog_id", "holder", "tenant"], _with_tenant(counting_catalogs(tenant, None), tenant)
            )
        )
        if postgres:
            conn.exec_driver_sql("SET LOCAL enable_nestloop = on")  # for the rest of this transaction only
        counts = (
            select(_SC.c.tenant, _SC.c.catalog_id, func.count())
            .where(_SC.c.tenant == tenant)
            .group_by(_SC.c.tenant, _SC.c.catalog_id)
        )
        conn.execute(insert(_CC).from_select(["tenant", "catalog_id", "consumed"], counts))
        return
    delta: Counter[str] = Counter()
    for chunk in chunks(dict.fromkeys(holders)):
        old = conn.execute(
            select(_SC.c.catalog_id, _SC.c.holder).where(_SC.c.tenant == tenant, _SC.c.holder.in_(chunk))
        )
        old_rows = {(c, h) for c, h in old}
        new_rows = {(c, h) for c, h in conn.execute(counting_catalogs(tenant, chunk))}
        gone, came = old_rows - new_rows, new_rows - old_rows
        if gone:
            conn.execute(
                delete(_SC).where(
                    _SC.c.tenant == tenant,
                    _SC.c.catalog_id == bindparam("b_cat"),
                    _SC.c.holder == bindparam("b_holder"),
                ),
                [{"b_cat": c, "b_holder": h} for c, h in gone],
            )
        if came:
            conn.execute(insert(_SC), [{"tenant": tenant, "catalog_id": c, "holder": h} for c, h in came])
        delta.update(c for c, _h in came)
        delta.subtract(c for c, _h in gone)
    changed = {c: n for c, n in delta.items() if n}
    if not changed:
        return
    existing = {
        r[0]
        for r in conn.execute(select(_CC.c.catalog_id).where(_CC.c.tenant == tenant, _CC.c.catalog_id.in_(changed)))
    }
    moves = [{"b_cat": c, "b_n": n} for c, n in changed.items() if c in existing]
    if moves:
        conn.execute(
            update(_CC)
            .where(_CC.c.tenant == tenant, _CC.c.catalog_id == bindparam("b_cat"))
            .values(consumed=_CC.c.consumed + bindparam("b_n")),
            moves,
        )
    fresh = [{"tenant": tenant, "catalog_id": c, "consumed": n} for c, n in changed.items() if c not in existing]
    if fresh:
        conn.execute(insert(_CC), fresh)


def catalog_consumed(session: Session, tenant: str, catalog_id: str | None = None) -> dict[str, int]:
    """Seat holders per catalog: a holder enrolled (and listed) in two catalogs counts in both."""
    q = select(_CC.c.catalog_id, _CC.c.consumed).where(_CC.c.tenant == tenant)
    if catalog_id is not None:
        q = q.where(_CC.c.catalog_id == catalog_id)
    return {r[0]: r[1] for r in session.connection().execute(q)}


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    conn = session.connection()
    name = conn.dialect.name
    ins: Any = (postgresql if name == "postgresql" else sqlite).insert(_LS)
    stmt = ins.on_conflict_do_update(
        index_elements=["tenant", "day", "catalog_id"],
        set_={k: ins.excluded[k] for k in ("purchased", "consumed", "available", "overage", "taken_at")},
    )
    conn.execute(stmt, rows)


def snapshot_ledger(session: Session, tenant: str, now: datetime, *, purchased: int, consumed: int,
                    tz: tzinfo = UTC) -> None:
    """The day's figures, total and per catalog; the last snapshot of a day wins. ``purchased`` and
    ``consumed`` are the seat model's figures of the step (``SeatModel.figures``), read once; the day
    is the tenant's (``[[tenant]] timezone``)."""
    day = now.astimezone(tz).date().isoformat()
    rows = [_ledger_row(tenant, day, "", purchased, consumed, now)]
    rows += [_ledger_row(tenant, day, cat, purchased, n, now) for cat, n in catalog_consumed(session, tenant).items()]
    _upsert(session, rows)


def _ledger_row(tenant: str, day: str, catalog: str, purchased: int, used: int, now: datetime) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "day": day,
        "catalog_id": catalog,
        "purchased": purchased,
        "consumed": used,
        "available": purchased - used,
        "overage": max(0, used - purchased),
        "taken_at": now,
    }
