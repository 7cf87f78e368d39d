"""Database adapter of the ``live_enrollment`` model: load its facts, plan, and the user sync CSV.

``plan_for`` plays the part of ``enrollment_store.plan_for`` for a ``live_enrollment``
subscription: besides the users a cycle or an import touched, it always re-plans the seat holders
whose last live enrollment expired and the users whose enrollment is live but who hold no seat —
an enrollment expires with the clock, not with a change anyone could see.

The sync CSV (seed 001, "Synchronize Users"): the file lists every user the platform keeps; the
users absent from it are deleted — their enrollments, admin assignments and learner-list entries
in CSV-fed catalogs (catalogs fed by the LMS connector are its own) — and their seats are freed
through the mass-free guard. Without ``apply`` it only says what it would delete.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlmodel import Session

from licsync import ledger
from licsync.db.models import Catalog, Course, DirectoryUser, Enrollment, LearnerListEntry, Seat
from licsync.db.models_seat_models import SubscriptionUpgrade
from licsync.errors import InputError
from licsync.seat_models import live_enrollment as live
from licsync.seat_models.csvfile import check_len, parse_all, require
from licsync.seats import Account, Plan
from licsync.subscriptions.terms import Terms

_S = Seat.__table__  # type: ignore[attr-defined]
_U = DirectoryUser.__table__  # type: ignore[attr-defined]
_E = Enrollment.__table__  # type: ignore[attr-defined]
_CO = Course.__table__  # type: ignore[attr-defined]
_CA = Catalog.__table__  # type: ignore[attr-defined]
_L = LearnerListEntry.__table__  # type: ignore[attr-defined]
_UP = SubscriptionUpgrade.__table__  # type: ignore[attr-defined]
CHUNK = 2000
USERS_HEADER = ("user_id", "user_principal_name")


# --------------------------------------------------------------------------- seats and reuses


def _in_year(terms: Terms) -> Any:
    return and_(_S.c.acquired_at < terms.ends_at, or_(_S.c.released_at.is_(None), _S.c.released_at > terms.starts_at))


def handed_this_year(session: Session, tenant: str, terms: Terms) -> int:
    """Unique users who held a seat at some time in the license year."""
    q = select(func.count(func.distinct(_S.c.holder))).where(_S.c.tenant == tenant, _in_year(terms))
    return int(session.connection().execute(q).scalar_one())


def peak_this_year(session: Session, tenant: str, terms: Terms, now: datetime) -> int:
    """The most seats held at once in the license year so far (the daily ledger, and now)."""
    return max(ledger.peak_consumed(session, tenant, terms.starts_at, min(now, terms.ends_at)),
               ledger.consumed(session, tenant))


def reuse_figures(session: Session, tenant: str, terms: Terms, seats: int, now: datetime) -> live.ReuseFigures:
    """``seats``: the purchased seats (``SeatModel.limits``, a tier upgrade included)."""
    return live.ReuseFigures(seats, terms.reuse_limit, handed_this_year(session, tenant, terms),
                             peak_this_year(session, tenant, terms, now))


# --------------------------------------------------------------------------- facts


def _live_learners(session: Session, tenant: str, now: datetime) -> set[str]:
    q = (
        select(_E.c.user_id)
        .distinct()
        .select_from(
            _E.join(_CO, and_(_CO.c.tenant == _E.c.tenant, _CO.c.id == _E.c.course_id)).join(
                _L, and_(_L.c.tenant == _E.c.tenant, _L.c.catalog_id == _CO.c.catalog_id, _L.c.user_id == _E.c.user_id)
            )
        )
        .where(
            _E.c.tenant == tenant,
            _E.c.role == "learner",
            _CO.c.status != "deleted",
            or_(_E.c.expires_at.is_(None), _E.c.expires_at > now),
        )
    )
    return {r[0] for r in session.connection().execute(q)}


def _open_holders(session: Session, tenant: str) -> set[str]:
    q = select(_S.c.holder).where(_S.c.tenant == tenant, _S.c.released_at.is_(None))
    return {r[0] for r in session.connection().execute(q)}


def candidate_ids(session: Session, tenant: str, ids: Iterable[str] | None, now: datetime) -> list[str]:
    """The touched users, plus everyone whose seat and liveness disagree now (``None``: everyone)."""
    live_now, holding = _live_learners(session, tenant, now), _open_holders(session, tenant)
    out = set(holding ^ live_now)
    if ids is None:
        out |= holding | {
            r[0]
            for r in session.connection().execute(
                select(_E.c.user_id).distinct().where(_E.c.tenant == tenant, _E.c.role == "learner")
            )
        }
    else:
        out |= set(ids)
    return sorted(out)


def load_holders(session: Session, tenant: str, ids: list[str], terms: Terms) -> list[live.LiveHolder]:
    conn = session.connection()
    accounts = {
        r[0]: Account(enabled=r[1], deleted=r[2])
        for r in conn.execute(
            select(_U.c.id, _U.c.account_enabled, _U.c.deleted).where(_U.c.tenant == tenant, _U.c.id.in_(ids))
        )
    }
    enrollments: dict[str, list[live.LiveEnrollment]] = defaultdict(list)
    first: dict[str, datetime] = {}
    q = (
        select(
            _E.c.user_id,
            _CO.c.catalog_id,
            _E.c.course_id,
            _CO.c.status,
            _L.c.user_id.is_not(None),
            _E.c.expires_at,
            _E.c.enrolled_at,
        )
        .select_from(
            _E.join(_CO, and_(_CO.c.tenant == _E.c.tenant, _CO.c.id == _E.c.course_id)).outerjoin(
                _L, and_(_L.c.tenant == _E.c.tenant, _L.c.catalog_id == _CO.c.catalog_id, _L.c.user_id == _E.c.user_id)
            )
        )
        .where(_E.c.tenant == tenant, _E.c.user_id.in_(ids), _E.c.role == "learner")
    )
    for uid, cat, course, status, on_list, expires, enrolled in conn.execute(q):
        enrollments[uid].append(live.LiveEnrollment(cat, course, status, bool(on_list), expires))
        if enrolled is not None and (uid not in first or enrolled < first[uid]):
            first[uid] = enrolled
    holding = {
        r[0]
        for r in conn.execute(
            select(_S.c.holder).where(_S.c.tenant == tenant, _S.c.holder.in_(ids), _S.c.released_at.is_(None))
        )
    }
    this_year = {
        r[0]
        for r in conn.execute(
            select(_S.c.holder).distinct().where(_S.c.tenant == tenant, _S.c.holder.in_(ids), _in_year(terms))
        )
    }
    last_release: dict[str, tuple[datetime, str]] = {}
    for holder, released, reason in conn.execute(
        select(_S.c.holder, _S.c.released_at, _S.c.release_reason).where(
            _S.c.tenant == tenant, _S.c.holder.in_(ids), _S.c.released_at.is_not(None)
        )
    ):
        if holder not in last_release or released > last_release[holder][0]:
            last_release[holder] = (released, reason)
    return [
        live.LiveHolder(
            holder_id=uid,
            account=accounts.get(uid),
            enrollments=tuple(sorted(enrollments.get(uid, ()), key=lambda e: (e.catalog_id, e.course_id))),
            holds_seat=uid in holding,
            handed_this_year=uid in this_year,
            last_release_reason=last_release[uid][1] if uid in last_release else None,
            first_enrolled_at=first.get(uid),
        )
        for uid in ids
    ]


def plan_for(session: Session, tenant: str, terms: Terms, ids: Iterable[str] | None, now: datetime, *,
             consumed: int, seats: int) -> Plan:
    """Plan the seats of the ``live_enrollment`` model (``ids`` None: a full reconcile). ``consumed``
    and ``seats`` (purchased, a tier upgrade included) are the step's figures, read once."""
    source = candidate_ids(session, tenant, ids, now)
    lt = live.LiveTerms(seats, terms.overage, terms.reuse_limit)

    def holders() -> Iterator[live.LiveHolder]:
        for chunk in ledger.chunks(source):
            yield from load_holders(session, tenant, chunk, terms)

    return live.plan(
        holders(),
        consumed_before=consumed,
        handed_this_year=handed_this_year(session, tenant, terms),
        terms=lt,
        now=now,
        peak=peak_this_year(session, tenant, terms, now),
    )


# --------------------------------------------------------------------------- sync CSV of users


@dataclass
class UserSyncResult:
    tenant: str
    file: str
    applied: bool
    in_file: int = 0
    known: int = 0
    unknown: int = 0  # in the file, but the platform has no enrollment of theirs
    deleted: list[str] = field(default_factory=list)
    enrollments_removed: int = 0
    seats_freed: int = 0
    frees_held: int = 0
    hold_id: str | None = None
    hold_reason: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "file": self.file,
            "applied": self.applied,
            "in_file": self.in_file,
            "known": self.known,
            "unknown": self.unknown,
            "deleted": len(self.deleted),
            "deleted_users": self.deleted[:200],
            "enrollments_removed": self.enrollments_removed,
            "seats_freed": self.seats_freed,
            "frees_held": self.frees_held,
            "hold_id": self.hold_id,
            "hold_reason": self.hold_reason,
        }

    def line(self) -> str:
        verb = "deleted" if self.applied else "would delete"
        text = (
            f"{self.tenant}: {self.in_file} users in {self.file}, {self.known} known to the platform; "
            f"{verb} {len(self.deleted)} user(s) not in the file and their {self.enrollments_removed} "
            f"enrollment(s)"
        )
        if self.applied:
            text += f"; seats −{self.seats_freed}"
            if self.hold_id:
                text += f"; {self.frees_held} FREES HELD for approval as {self.hold_id}: {self.hold_reason}"
        else:
            text += " [preview: nothing changed; add --sync to apply]"
        return text


def parse_users(data: bytes) -> list[str]:
    seen: set[str] = set()

    def parse(_line: int, c: dict[str, str], why: list[str]) -> str | None:
        require(c, ("user_id",), why)
        check_len(c, {"user_id": 64, "user_principal_name": 320}, why)
        if why or c["user_id"] in seen:
            return None
        seen.add(c["user_id"])
        return c["user_id"]

    return parse_all(data, USERS_HEADER, parse)


def _csv_courses(tenant: str) -> Any:
    odata = select(_CA.c.id).where(_CA.c.tenant == tenant, _CA.c.source != "csv")
    return select(_CO.c.id).where(_CO.c.tenant == tenant, _CO.c.catalog_id.not_in(odata)), odata


def platform_users(session: Session, tenant: str) -> list[tuple[str, str | None]]:
    """``(user_id, upn)`` of every user with an enrollment or admin assignment in a CSV-fed catalog."""
    courses, _odata = _csv_courses(tenant)
    q = (
        select(_E.c.user_id, func.max(_E.c.upn))
        .where(_E.c.tenant == tenant, _E.c.course_id.in_(courses))
        .group_by(_E.c.user_id)
        .order_by(_E.c.user_id)
    )
    return [(r[0], r[1]) for r in session.connection().execute(q)]


def sync_users(
    session: Session, tenant: str, path: Path, *, apply: bool, now: datetime
) -> UserSyncResult:
    """Delete the enrollments of the users absent from the file (``apply``), or say who would be
    deleted. The caller re-plans ``result.deleted`` (``licsync.service.sync_users``)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    listed = set(parse_users(data))
    if apply and not listed:
        raise InputError(f"{path} lists no users: the sync would delete every user of tenant {tenant}; refused")
    known = {u for u, _ in platform_users(session, tenant)}
    result = UserSyncResult(
        tenant, Path(path).name, apply, len(listed), len(known), len(listed - known), sorted(known - listed)
    )
    conn = session.connection()
    courses, odata = _csv_courses(tenant)
    for chunk in ledger.chunks(result.deleted):
        result.enrollments_removed += int(
            conn.execute(
                select(func.count())
                .select_from(_E)
                .where(
                    _E.c.tenant == tenant, _E.c.user_id.in_(chunk), _E.c.course_id.in_(courses), _E.c.role == "learner"
                )
            ).scalar_one()
        )
    if not apply or not result.deleted:
        return result
    for chunk in ledger.chunks(result.deleted):
        conn.execute(delete(_E).where(_E.c.tenant == tenant, _E.c.user_id.in_(chunk), _E.c.course_id.in_(courses)))
        conn.execute(delete(_L).where(_L.c.tenant == tenant, _L.c.user_id.in_(chunk), _L.c.catalog_id.not_in(odata)))
    return result
