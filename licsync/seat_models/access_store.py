"""Database adapter of the ``first_access`` model: activity in, consumption, seats, duplicates, reports.

* ``import_activity`` (the CSV of launches) and ``ingest_statements`` (xAPI-style statements from
  the HTTP API) validate their input whole, then record it in the caller's transaction: the
  learner behind each activity id (``learner_activity``), and the first access of each activity id
  in the current license period (``first_access``) — the consumption.
* Every consumption is also an open row of the ``seat`` table (holder = the activity id, reason
  ``first_access``), so ``status``, grace, thresholds, the ledger and the access check see it. A
  seat is never freed within its period; when the period is over (a renewed key starts a new one)
  the previous period's seats are released as ``license_period_ended``. That release follows the
  subscription's calendar, not a read of data, so it bypasses the mass-free guard, which exists
  to stop frees caused by partial or wrong data (``SeatModel.follow_up``); takes are planned by the
  ``first_access`` model and applied by ``licsync.reseat`` after an ingest.
* Candidate duplicates are refreshed after each ingest, among the period's consumed activity ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlmodel import Session, col

from licsync.config import Settings
from licsync.db.models import AuditLog, DirectoryUser, Seat
from licsync.db.models_seat_models import DuplicateCandidate, FirstAccessConsumption, LearnerActivity
from licsync.errors import InputError, NotFound
from licsync.seat_models import first_access as fa
from licsync.seat_models.reasons import ModelReason
from licsync.seats import Plan, SeatChange
from licsync.subscriptions import registry
from licsync.subscriptions.terms import Terms

_S = Seat.__table__  # type: ignore[attr-defined]
_FA = FirstAccessConsumption.__table__  # type: ignore[attr-defined]
_LA = LearnerActivity.__table__  # type: ignore[attr-defined]
_DC = DuplicateCandidate.__table__  # type: ignore[attr-defined]
_U = DirectoryUser.__table__  # type: ignore[attr-defined]


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


def period_terms(session: Session, tenant: str) -> Terms:
    """The active ``first_access`` subscription, or InputError saying why activity cannot count."""
    found = registry.active_subscription(session, tenant)
    if found is None:
        raise InputError(f"tenant {tenant} has no active subscription: activity cannot be counted; "
                         "activate a first_access subscription first")
    if found[1].policy != "first_access":
        raise InputError(f"tenant {tenant}'s subscription {found[1].id} counts seats by {found[1].policy}, "
                         "not first_access: activity is not counted")
    return found[1]


def _period(terms: Terms) -> Any:
    return (_FA.c.subscription_id == terms.id) & (_FA.c.period_start == terms.starts_at)


@dataclass
class IngestResult:
    tenant: str
    source: str  # csv | xapi
    received: int = 0
    launches: int = 0
    ignored: int = 0  # statements with another verb
    outside_period: int = 0
    new_learners: int = 0
    consumed_new: int = 0
    corrected: int = 0
    new_candidates: int = 0
    figures: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "source": self.source, "received": self.received, "launches": self.launches,
                "ignored": self.ignored, "outside_period": self.outside_period, "new_learners": self.new_learners,
                "consumed_new": self.consumed_new, "first_access_corrected": self.corrected,
                "new_duplicate_candidates": self.new_candidates, **self.figures}

    def line(self) -> str:
        f = self.figures
        return (f"{self.tenant}: {self.launches} launches ({self.outside_period} outside the license period), "
                f"{self.consumed_new} new learners consumed a seat; purchased {f.get('purchased')}, consumed "
                f"{f.get('consumed')}, available {f.get('available')}; {self.new_candidates} new candidate "
                "duplicate(s)")


def record_launches(session: Session, settings: Settings | None, tenant: str, launches: Sequence[fa.Launch],
                    now: datetime, *, source: str, received: int, ignored: int = 0,
                    actor: str = "cli") -> IngestResult:
    terms = period_terms(session, tenant)
    conn = session.connection()
    result = IngestResult(tenant, source, received, len(launches), ignored)
    ids = sorted({la.activity_id for la in launches})
    _upsert_learners(session, tenant, launches, result)
    existing: dict[str, fa.FirstAccess] = {}
    for chunk in _chunks(ids):
        for r in conn.execute(select(_FA.c.activity_id, _FA.c.content_id, _FA.c.content_title,
                                     _FA.c.first_access_at, _FA.c.user_id)
                              .where(_FA.c.tenant == tenant, _period(terms), _FA.c.activity_id.in_(chunk))):
            existing[r[0]] = fa.FirstAccess(r[0], r[1], r[2], r[3], r[4] or "")
    c = fa.consume(existing, launches, terms.starts_at, terms.ends_at)
    result.outside_period, result.consumed_new, result.corrected = c.outside_period, len(c.new), len(c.corrected)
    sources = {la.activity_id: la.source for la in launches}
    if c.new:
        conn.execute(insert(_FA), [{"tenant": tenant, "subscription_id": terms.id, "period_start": terms.starts_at,
                                    "activity_id": x.activity_id, "user_id": x.user_id or None,
                                    "content_id": x.content_id, "content_title": x.content_title,
                                    "first_access_at": x.first_access_at, "source": sources[x.activity_id],
                                    "recorded_at": now} for x in c.new])
    for x in c.corrected:
        conn.execute(update(_FA).where(_FA.c.tenant == tenant, _period(terms), _FA.c.activity_id == x.activity_id)
                     .values(content_id=x.content_id, content_title=x.content_title,
                             first_access_at=x.first_access_at))
    result.new_candidates = refresh_duplicates(session, tenant, now)
    result.figures = figures(session, tenant, now)
    conn.execute(insert(AuditLog.__table__), [{  # type: ignore[attr-defined]
        "at": now, "tenant": tenant, "actor": actor, "action": "activity_ingested", "subject": source,
        "detail": result.summary()}])
    return result


def _chunks(ids: Sequence[str], size: int = 2000) -> Iterable[Sequence[str]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


_NAMES = ("user_id", "first_name", "last_name", "email")


def _upsert_learners(session: Session, tenant: str, launches: Sequence[fa.Launch], result: IngestResult) -> None:
    """Who is behind each activity id: the newest non-blank value of each field wins."""
    conn = session.connection()
    seen: dict[str, tuple[datetime, datetime, int]] = {}  # first, last, launches in this batch
    times: dict[str, list[datetime]] = {}
    names: dict[str, dict[str, str]] = {}
    for la in sorted(launches, key=lambda x: x.occurred_at):
        first, _last, n = seen.get(la.activity_id, (la.occurred_at, la.occurred_at, 0))
        seen[la.activity_id] = (first, la.occurred_at, n + 1)
        times.setdefault(la.activity_id, []).append(la.occurred_at)
        mine = names.setdefault(la.activity_id, {})
        mine.update({k: v for k in _NAMES if (v := getattr(la, k))})
    ids = sorted(seen)
    known: dict[str, tuple[Any, ...]] = {}
    for chunk in _chunks(ids):
        for r in conn.execute(select(_LA.c.activity_id, _LA.c.first_seen_at, _LA.c.last_seen_at, _LA.c.launches,
                                     *(_LA.c[k] for k in _NAMES))
                              .where(_LA.c.tenant == tenant, _LA.c.activity_id.in_(chunk))):
            known[r[0]] = tuple(r[1:])
    fresh = []
    for aid in ids:
        first, last, n = seen[aid]
        if aid not in known:
            fresh.append({"tenant": tenant, "activity_id": aid, **dict.fromkeys(_NAMES), **names[aid],
                          "first_seen_at": first, "last_seen_at": last, "launches": n})
            continue
        first_seen, last_seen, count, *stored = known[aid]
        old = dict(zip(_NAMES, stored, strict=True))
        newer = last >= last_seen
        values: dict[str, Any] = {k: v for k, v in names[aid].items() if newer or not old[k]}
        later = sum(1 for t in times[aid] if t > last_seen)  # launches already counted are not counted again
        values |= {"launches": count + later, "first_seen_at": min(first_seen, first),
                   "last_seen_at": max(last_seen, last)}
        conn.execute(update(_LA).where(_LA.c.tenant == tenant, _LA.c.activity_id == aid).values(**values))
    if fresh:
        conn.execute(insert(_LA), fresh)
    result.new_learners = len(fresh)


def import_activity(session: Session, settings: Settings | None, tenant: str, path: Path, now: datetime,
                    actor: str = "cli") -> IngestResult:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    period_terms(session, tenant)  # refuse early, before parsing a large file
    launches = fa.parse_activity(data, now)
    return record_launches(session, settings, tenant, launches, now, source="csv", received=len(launches),
                           actor=actor)


def ingest_statements(session: Session, tenant: str, statements: list[dict[str, Any]], now: datetime, *,
                      settings: Settings | None = None, actor: str = "api") -> IngestResult:
    """xAPI-style statements (verbs launched/experienced count; others are ignored), validated whole.

    Raises InputError (with one problem per bad statement, nothing stored) for a bad batch, and
    when the tenant's active subscription does not count by ``first_access``. Pass ``settings`` so
    that seat changes run the notifications hook; the caller commits.
    """
    period_terms(session, tenant)
    launches, ignored = fa.parse_statements(statements, now)
    return record_launches(session, settings, tenant, launches, now, source="xapi", received=len(statements),
                           ignored=ignored, actor=actor)


# --------------------------------------------------------------------------- seats


def plan_for(session: Session, tenant: str, terms: Terms, now: datetime) -> tuple[Plan, Plan]:
    """(period frees, takes): seats of earlier periods to release, consumptions without a seat."""
    conn = session.connection()
    consumed = {r[0] for r in conn.execute(select(_FA.c.activity_id).where(_FA.c.tenant == tenant, _period(terms)))}
    holding = {r[0] for r in conn.execute(select(_S.c.holder).where(_S.c.tenant == tenant,
                                                                     _S.c.released_at.is_(None)))}
    before = len(holding)
    frees = tuple(SeatChange(h, "free", ModelReason.LICENSE_PERIOD_ENDED)  # type: ignore[arg-type]
                  for h in sorted(holding - consumed))
    takes = tuple(SeatChange(a, "take", ModelReason.FIRST_ACCESS)  # type: ignore[arg-type]
                  for a in sorted(consumed - holding))
    return (Plan(frees=frees, consumed_before=before, considered=len(frees), now=now),
            Plan(takes=takes, consumed_before=before - len(frees), considered=len(takes), now=now))



# --------------------------------------------------------------------------- duplicates and reports


def _directory_ids(session: Session, tenant: str, learners: list[tuple[Any, ...]]) -> dict[str, str]:
    """Activity id → the directory account it resolves to: its user id if that is one, else by email."""
    conn = session.connection()
    users = {r[0] for r in conn.execute(select(_U.c.id).where(_U.c.tenant == tenant,
                                                              _U.c.id.in_(sorted({x[1] for x in learners if x[1]}))))}
    emails = sorted({x[4].casefold() for x in learners if x[4]})
    by_mail: dict[str, str] = {}
    for chunk in _chunks(emails):
        for uid, mail, upn in conn.execute(select(_U.c.id, _U.c.mail, _U.c.upn).where(
                _U.c.tenant == tenant, func.lower(_U.c.mail).in_(chunk) | func.lower(_U.c.upn).in_(chunk))):
            for address in (mail, upn):
                if address:
                    by_mail.setdefault(address.casefold(), uid)
    out = {}
    for aid, user, _first, _last, email, _at in learners:
        hit = user if user in users else by_mail.get((email or "").casefold())
        if hit:
            out[aid] = hit
    return out


def _consumed_learners(session: Session, tenant: str, terms: Terms) -> list[tuple[Any, ...]]:
    q = (select(_FA.c.activity_id, func.coalesce(_LA.c.user_id, _FA.c.user_id), _LA.c.first_name, _LA.c.last_name,
                _LA.c.email, _FA.c.first_access_at)
         .select_from(_FA.outerjoin(_LA, (_LA.c.tenant == _FA.c.tenant) & (_LA.c.activity_id == _FA.c.activity_id)))
         .where(_FA.c.tenant == tenant, _period(terms)))
    return [tuple(r) for r in session.connection().execute(q)]


def refresh_duplicates(session: Session, tenant: str, now: datetime) -> int:
    """Record new candidate pairs among the period's consumed learners; decided pairs keep their status."""
    terms = period_terms(session, tenant)
    learners = _consumed_learners(session, tenant, terms)
    directory = _directory_ids(session, tenant, learners)
    found = fa.candidates(tenant, (fa.Identity(r[0], r[2] or "", r[3] or "", r[4] or "", directory.get(r[0], ""),
                                               r[5]) for r in learners))
    conn = session.connection()
    known = {r[0] for r in conn.execute(select(_DC.c.id).where(_DC.c.tenant == tenant))}
    fresh = [{"id": c.id, "tenant": tenant, "activity_a": c.activity_a, "activity_b": c.activity_b,
              "matched_on": ",".join(c.matched_on), "status": "candidate", "found_at": now}
             for c in found if c.id not in known]
    if fresh:
        conn.execute(insert(_DC), fresh)
    return len(fresh)


def list_duplicates(session: Session, tenant: str, *, include_decided: bool = False) -> list[dict[str, Any]]:
    q = select(DuplicateCandidate).where(DuplicateCandidate.tenant == tenant)
    if not include_decided:
        q = q.where(DuplicateCandidate.status == "candidate")
    rows = session.execute(q.order_by(col(DuplicateCandidate.activity_a),
                                    col(DuplicateCandidate.activity_b))).scalars().all()
    learners = {r[0]: r for r in session.connection().execute(
        select(_LA.c.activity_id, _LA.c.first_name, _LA.c.last_name, _LA.c.email, _LA.c.user_id)
        .where(_LA.c.tenant == tenant,
               _LA.c.activity_id.in_(sorted({x for d in rows for x in (d.activity_a, d.activity_b)}))))}

    def who(aid: str) -> dict[str, Any]:
        r = learners.get(aid)
        return {"activity_id": aid, "first_name": r[1] if r else None, "last_name": r[2] if r else None,
                "email": r[3] if r else None, "user_id": r[4] if r else None}

    return [{"id": d.id, "tenant": d.tenant, "status": d.status, "matched_on": d.matched_on.split(","),
             "a": who(d.activity_a), "b": who(d.activity_b), "found_at": _iso(d.found_at),
             "decided_at": _iso(d.decided_at), "decided_by": d.decided_by} for d in rows]


def decide_duplicate(session: Session, candidate_id: str, decision: str, now: datetime, *,
                     tenant: str | None = None, actor: str = "cli") -> dict[str, Any]:
    """``confirm`` or ``dismiss`` a candidate (an admin's word; it can be changed the same way)."""
    status = {"confirm": "confirmed", "dismiss": "dismissed"}[decision]
    row = session.get(DuplicateCandidate, candidate_id)
    if row is None or (tenant is not None and row.tenant != tenant):
        raise NotFound(f"no candidate duplicate {candidate_id!r} (see `licsync duplicates --tenant NAME`)")
    before = row.status
    row.status, row.decided_at, row.decided_by = status, now, actor
    session.add(AuditLog(at=now, tenant=row.tenant, actor=actor, action=f"duplicate_{status}", subject=row.id,
                         detail={"activity_a": row.activity_a, "activity_b": row.activity_b, "from": before}))
    session.flush()
    return {"id": row.id, "tenant": row.tenant, "status": status, "previous": before,
            "activity_a": row.activity_a, "activity_b": row.activity_b}


def _duplicate_map(session: Session, tenant: str, first: dict[str, datetime]) -> dict[str, str]:
    pairs = session.connection().execute(select(_DC.c.activity_a, _DC.c.activity_b)
                                         .where(_DC.c.tenant == tenant, _DC.c.status == "confirmed"))
    return fa.duplicate_of(((a, b) for a, b in pairs), first)


def consumption_report(session: Session, tenant: str) -> list[dict[str, Any]]:
    """Per consumed activity id of the current period, oldest first access first."""
    terms = period_terms(session, tenant)
    q = (select(_FA.c.activity_id, func.coalesce(_LA.c.user_id, _FA.c.user_id), _LA.c.first_name, _LA.c.last_name,
                _FA.c.content_title, _FA.c.content_id, _FA.c.first_access_at)
         .select_from(_FA.outerjoin(_LA, (_LA.c.tenant == _FA.c.tenant) & (_LA.c.activity_id == _FA.c.activity_id)))
         .where(_FA.c.tenant == tenant, _period(terms)).order_by(_FA.c.first_access_at, _FA.c.activity_id))
    rows = [tuple(r) for r in session.connection().execute(q)]
    dup = _duplicate_map(session, tenant, {r[0]: r[6] for r in rows})
    return [{"activity_id": r[0], "user_id": r[1] or "", "first_name": r[2] or "", "last_name": r[3] or "",
             "first_content": r[4] or r[5], "first_access_at": _iso(r[6]), "duplicate_of": dup.get(r[0], "")}
            for r in rows]


def figures(session: Session, tenant: str, now: datetime) -> dict[str, Any]:
    """The license dashboard of seed 000: period, days remaining, and the billing figures."""
    terms = period_terms(session, tenant)
    conn = session.connection()
    first = {r[0]: r[1] for r in conn.execute(select(_FA.c.activity_id, _FA.c.first_access_at)
                                               .where(_FA.c.tenant == tenant, _period(terms)))}
    dup = _duplicate_map(session, tenant, first)
    f = fa.Figures(terms.seats, len(first), len(dup))
    open_candidates = conn.execute(select(func.count()).select_from(_DC).where(
        _DC.c.tenant == tenant, _DC.c.status == "candidate")).scalar_one()
    days = max(0, (terms.ends_at - now).days) if now < terms.ends_at else 0
    return {"period": {"starts_at": _iso(terms.starts_at), "ends_at": _iso(terms.ends_at), "days_remaining": days},
            **f.as_dict(), "candidate_duplicates": int(open_candidates)}
