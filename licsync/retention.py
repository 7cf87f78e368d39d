"""Retention (SPEC §5 ``[retention]``): what licsync keeps, and for how long.

``purge`` does two things, in one transaction (``dry_run``: counted, then rolled back):

1. **History** older than ``audit_days`` (default 400) is deleted: ``directory_change`` (what each
   sync saw change), ``audit_log`` and finished ``sync_cycle`` rows.
2. **Personal data of permanently deleted users** — hard-deleted in Entra ID more than
   ``deleted_user_days`` ago (default 30) — is erased: their ``directory_user`` row (name, UPN,
   mail, employee id), every ``directory_change`` about them, their enrollments and learner-list
   entries, waitlist place, role assignments and sign-in times; their learner activity keeps its
   activity id and counts but loses the user id, names and email, their first-access
   consumptions the user id. Their released seats **stay**, anonymised: the holder becomes
   ``erased:<seat id>``, one value per seat that links to nothing, so the seat history (when a seat
   was taken and freed, and why) still adds up. A user who still holds a seat or a pool seat is
   left alone (the seat model must release it first) and counted as ``users_still_holding``.

Nothing else is touched: subscriptions, grace, the ledger, holds, outbox messages (admin
addresses), tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, delete, exists, literal, select, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from licsync.config import Settings
from licsync.db.models import (
    AuditLog,
    DirectoryChange,
    DirectoryUser,
    Enrollment,
    LearnerListEntry,
    Seat,
    SeatCatalog,
    SeatWaitlist,
    SyncCycle,
)
from licsync.db.models_seat_models import (
    FirstAccessConsumption,
    LearnerActivity,
    PoolSeat,
    RoleAssignment,
    SignInActivity,
)
from licsync.log import get_logger

ERASED_PREFIX = "erased:"
CHUNK = 500  # user ids per statement (bound parameters stay well under every driver's limit)

_DU = DirectoryUser.__table__  # type: ignore[attr-defined]
_DC = DirectoryChange.__table__  # type: ignore[attr-defined]
_AL = AuditLog.__table__  # type: ignore[attr-defined]
_CY = SyncCycle.__table__  # type: ignore[attr-defined]
_SEAT = Seat.__table__  # type: ignore[attr-defined]
_SC = SeatCatalog.__table__  # type: ignore[attr-defined]
_WL = SeatWaitlist.__table__  # type: ignore[attr-defined]
_EN = Enrollment.__table__  # type: ignore[attr-defined]
_LL = LearnerListEntry.__table__  # type: ignore[attr-defined]
_RA = RoleAssignment.__table__  # type: ignore[attr-defined]
_SI = SignInActivity.__table__  # type: ignore[attr-defined]
_PS = PoolSeat.__table__  # type: ignore[attr-defined]
_LA = LearnerActivity.__table__  # type: ignore[attr-defined]
_FA = FirstAccessConsumption.__table__  # type: ignore[attr-defined]


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield list(items[i : i + CHUNK])


def _erasable(conn: Connection, cutoff: datetime) -> dict[str, list[str]]:
    """Per tenant, the users hard-deleted before ``cutoff`` who hold no seat and no pool seat."""
    open_seat = exists().where(_SEAT.c.tenant == _DU.c.tenant, _SEAT.c.holder == _DU.c.id,
                               _SEAT.c.released_at.is_(None))
    pool_seat = exists().where(_PS.c.tenant == _DU.c.tenant, _PS.c.user_id == _DU.c.id)
    rows = conn.execute(select(_DU.c.tenant, _DU.c.id).where(
        _DU.c.deleted == "hard", _DU.c.deleted_since < cutoff, ~open_seat, ~pool_seat)
        .order_by(_DU.c.tenant, _DU.c.id))
    out: dict[str, list[str]] = {}
    for tenant, uid in rows:
        out.setdefault(tenant, []).append(uid)
    return out


def _still_holding(conn: Connection, cutoff: datetime) -> int:
    open_seat = exists().where(_SEAT.c.tenant == _DU.c.tenant, _SEAT.c.holder == _DU.c.id,
                               _SEAT.c.released_at.is_(None))
    pool_seat = exists().where(_PS.c.tenant == _DU.c.tenant, _PS.c.user_id == _DU.c.id)
    return len(conn.execute(select(_DU.c.id).where(
        _DU.c.deleted == "hard", _DU.c.deleted_since < cutoff, open_seat | pool_seat)).all())


def _erase(conn: Connection, tenant: str, ids: list[str], counts: dict[str, int]) -> None:
    def add(key: str, n: int) -> None:
        counts[key] = counts.get(key, 0) + max(n, 0)

    add("seat_anonymised", conn.execute(
        update(_SEAT).where(_SEAT.c.tenant == tenant, _SEAT.c.holder.in_(ids), _SEAT.c.released_at.is_not(None))
        .values(holder=literal(ERASED_PREFIX).concat(cast(_SEAT.c.id, String)))).rowcount)
    for key, table, col in (("directory_change", _DC, _DC.c.user_id), ("enrollment", _EN, _EN.c.user_id),
                            ("learner_list", _LL, _LL.c.user_id), ("seat_catalog", _SC, _SC.c.holder),
                            ("seat_waitlist", _WL, _WL.c.holder), ("role_assignment", _RA, _RA.c.user_id),
                            ("sign_in_activity", _SI, _SI.c.user_id)):
        add(key + "_erased", conn.execute(delete(table).where(table.c.tenant == tenant, col.in_(ids))).rowcount)
    add("learner_activity_anonymised", conn.execute(
        update(_LA).where(_LA.c.tenant == tenant, _LA.c.user_id.in_(ids))
        .values(user_id=None, first_name=None, last_name=None, email=None)).rowcount)
    add("first_access_anonymised", conn.execute(
        update(_FA).where(_FA.c.tenant == tenant, _FA.c.user_id.in_(ids)).values(user_id=None)).rowcount)
    add("directory_user_erased", conn.execute(
        delete(_DU).where(_DU.c.tenant == tenant, _DU.c.id.in_(ids))).rowcount)


def purge(engine: Engine, settings: Settings, now: datetime, *, dry_run: bool = False) -> dict[str, Any]:
    """Apply the retention policy as of ``now``; returns what was (or would be) removed, by table."""
    cfg = settings.retention
    history_cutoff = now - timedelta(days=cfg.audit_days)
    users_cutoff = now - timedelta(days=cfg.deleted_user_days)
    counts: dict[str, int] = {}
    with Session(engine) as session:
        conn = session.connection()
        counts["directory_change_pruned"] = conn.execute(delete(_DC).where(_DC.c.at < history_cutoff)).rowcount
        counts["audit_log_pruned"] = conn.execute(delete(_AL).where(_AL.c.at < history_cutoff)).rowcount
        counts["sync_cycle_pruned"] = conn.execute(delete(_CY).where(
            _CY.c.started_at < history_cutoff, _CY.c.status != "running")).rowcount
        users = _erasable(conn, users_cutoff)
        counts["users_erased"] = sum(len(v) for v in users.values())
        counts["users_still_holding"] = _still_holding(conn, users_cutoff)
        for tenant, ids in users.items():
            for chunk in _chunks(ids):
                _erase(conn, tenant, chunk, counts)
        if dry_run:
            session.rollback()
        else:
            session.commit()
    return {
        "dry_run": dry_run,
        "history_before": history_cutoff.isoformat(),
        "deleted_users_before": users_cutoff.isoformat(),
        "audit_days": cfg.audit_days,
        "deleted_user_days": cfg.deleted_user_days,
        "counts": dict(sorted(counts.items())),
    }


def summary_line(report: dict[str, Any]) -> str:
    c = report["counts"]
    head = "purge (dry run, nothing changed)" if report["dry_run"] else "purge"
    return (f"{head}: history before {report['history_before'][:10]} — {c['directory_change_pruned']} directory "
            f"changes, {c['audit_log_pruned']} audit rows, {c['sync_cycle_pruned']} cycles; "
            f"{c['users_erased']} users deleted before {report['deleted_users_before'][:10]} erased "
            f"({c.get('seat_anonymised', 0)} seats anonymised), {c['users_still_holding']} still holding a seat")


def daily_purge(engine: Engine, settings: Settings, now: datetime) -> dict[str, Any]:
    """The daily retention run (``licsync purge``): logs its one line."""
    report = purge(engine, settings, now)
    get_logger(component="retention").info("purged", line=summary_line(report), **report["counts"])
    return report
