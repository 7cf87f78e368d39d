"""Database adapter of the ``role`` model: pools, role changes under a lock, reports, sign-in activity.

Never over-allocated, even when assignments race: every role change of a tenant first writes the
pool rows (``seat_pool``: an upsert of the totals from the signed key), then locks them
(``SELECT … FOR UPDATE``, in pool order), and only then counts the pool seats and decides. On
PostgreSQL the lock makes a second transaction wait until the first commits; its count, a new
statement under READ COMMITTED, then sees the first one's seats. On SQLite the first write takes
the database's write lock, with the same effect.

Inactive assignments come from Graph ``signInActivity`` (a separate ``/users?$select=signInActivity``
read; AuditLog.Read.All and Entra ID P1), stored per user in ``sign_in_activity``. Until it has been
read once for the tenant, inactivity is unknown (``None``), not "everyone".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync.config import Settings, TenantConfig
from licsync.db import session_scope
from licsync.db.models import AuditLog
from licsync.db.models_seat_models import PoolSeat, RoleAssignment, SeatPool, SignInActivity
from licsync.errors import InputError
from licsync.graph.client import GraphClient
from licsync.seat_models import role as rules
from licsync.subscriptions import registry
from licsync.subscriptions.terms import Terms

_P = SeatPool.__table__  # type: ignore[attr-defined]
_PS = PoolSeat.__table__  # type: ignore[attr-defined]
_RA = RoleAssignment.__table__  # type: ignore[attr-defined]
_SI = SignInActivity.__table__  # type: ignore[attr-defined]
_AU = AuditLog.__table__  # type: ignore[attr-defined]


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


def mapping(settings: Settings) -> dict[str, tuple[str, ...]]:
    """``[roles]``: role (case-insensitive) → the pools it needs."""
    return {role.lower(): tuple(pools) for role, pools in settings.roles.items()}


def inactive_days(settings: Settings | None) -> int:
    """``[seats] inactive_days`` when configured (read defensively until that key exists), else 90."""
    days = getattr(getattr(settings, "seats", None), "inactive_days", None)
    return int(days) if isinstance(days, int) and days > 0 else rules.DEFAULT_INACTIVE_DAYS


def role_terms(session: Session, tenant: str) -> Terms:
    found = registry.active_subscription(session, tenant)
    if found is None:
        raise InputError(f"tenant {tenant} has no active subscription: roles cannot take pool seats; "
                         "activate a role subscription first")
    if found[1].policy != "role":
        raise InputError(f"tenant {tenant}'s subscription {found[1].id} counts seats by {found[1].policy}, "
                         "not role: pool seats do not apply")
    return found[1]


def key_pools(terms: Terms) -> dict[str, int]:
    return {str(k): int(v) for k, v in dict(terms.extras.get("pools", {})).items()}


def _upsert_pools(session: Session, tenant: str, terms: Terms, now: datetime) -> None:
    conn = session.connection()
    totals = key_pools(terms)
    for name in {r[0] for r in conn.execute(select(_P.c.pool).where(_P.c.tenant == tenant))} - set(totals):
        totals[name] = 0  # no longer in the key: its seats stay until their roles go, none are added
    if not totals:
        return
    ins: Any = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(_P)
    conn.execute(ins.on_conflict_do_update(index_elements=["tenant", "pool"],
                                           set_={"total": ins.excluded.total, "updated_at": ins.excluded.updated_at}),
                 [{"tenant": tenant, "pool": p, "total": n, "updated_at": now} for p, n in sorted(totals.items())])


def lock_pools(session: Session, tenant: str) -> dict[str, rules.Pool]:
    """The tenant's pools, locked for this transaction, with their seats counted after the lock."""
    conn = session.connection()
    totals = {r[0]: r[1] for r in conn.execute(
        select(_P.c.pool, _P.c.total).where(_P.c.tenant == tenant).order_by(_P.c.pool).with_for_update())}
    counts = dict(conn.execute(select(_PS.c.pool, func.count()).where(_PS.c.tenant == tenant)
                               .group_by(_PS.c.pool)).all())
    return {p: rules.Pool(p, t, int(counts.get(p, 0))) for p, t in totals.items()}


def _current(session: Session, tenant: str, users: Sequence[str]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    conn = session.connection()
    roles: dict[str, set[str]] = defaultdict(set)
    seats: dict[str, set[str]] = defaultdict(set)
    for i in range(0, len(users), 2000):
        chunk = users[i : i + 2000]
        for u, r in conn.execute(select(_RA.c.user_id, _RA.c.role).where(_RA.c.tenant == tenant,
                                                                         _RA.c.user_id.in_(chunk))):
            roles[u].add(r)
        for u, p in conn.execute(select(_PS.c.user_id, _PS.c.pool).where(_PS.c.tenant == tenant,
                                                                         _PS.c.user_id.in_(chunk))):
            seats[u].add(p)
    return roles, seats


def change_roles(session: Session, settings: Settings, tenant: str, *, add: Iterable[tuple[str, str]] = (),
                 remove: Iterable[tuple[str, str]] = (), now: datetime, actor: str = "cli") -> rules.RolePlan:
    """Give and take roles (removals first), in the caller's transaction, never over-allocating a pool."""
    add, remove = [(u, r.lower()) for u, r in add], [(u, r.lower()) for u, r in remove]
    terms = role_terms(session, tenant)
    _upsert_pools(session, tenant, terms, now)
    pools = lock_pools(session, tenant)
    roles, seats = _current(session, tenant, sorted({u for u, _ in add} | {u for u, _ in remove}))
    p = rules.plan(roles, seats, pools.values(), mapping(settings), add=add, remove=remove)
    conn = session.connection()
    for d in p.decisions:
        if d.granted and d.action == "remove":
            conn.execute(delete(_RA).where(_RA.c.tenant == tenant, _RA.c.user_id == d.user_id, _RA.c.role == d.role))
            if d.returns:
                conn.execute(delete(_PS).where(_PS.c.tenant == tenant, _PS.c.user_id == d.user_id,
                                               _PS.c.pool.in_(d.returns)))
        elif d.granted:
            conn.execute(insert(_RA), [{"tenant": tenant, "user_id": d.user_id, "role": d.role, "assigned_at": now}])
            if d.takes:
                conn.execute(insert(_PS), [{"tenant": tenant, "pool": pool, "user_id": d.user_id, "acquired_at": now,
                                            "role": d.role} for pool in d.takes])
    actions = {"add": "role_assigned", "remove": "role_removed"}
    audit = [{"at": now, "tenant": tenant, "actor": actor, "subject": d.user_id,
              "action": actions[d.action] if d.granted else "role_refused",
              "detail": {"role": d.role, "takes": list(d.takes), "returns": list(d.returns), "reason": d.reason,
                         "pool": d.pool, "sentence": d.sentence}} for d in p.decisions]
    if audit:
        conn.execute(insert(_AU), audit)
    return p


def assign_role(session: Session, settings: Settings, tenant: str, user_id: str, role: str, now: datetime, *,
                actor: str = "cli") -> rules.Decision:
    """Give one role; the decision says whether it was granted, and why not."""
    p = change_roles(session, settings, tenant, add=[(user_id, role)], now=now, actor=actor)
    return p.decisions[0] if p.decisions else rules.Decision(user_id, role.lower(), "add")


def remove_role(session: Session, settings: Settings, tenant: str, user_id: str, role: str, now: datetime, *,
                actor: str = "cli") -> rules.Decision | None:
    p = change_roles(session, settings, tenant, remove=[(user_id, role)], now=now, actor=actor)
    return p.decisions[0] if p.decisions else None


@dataclass
class RoleImportResult:
    tenant: str
    file: str
    replace: bool
    rows: int = 0
    plan: rules.RolePlan = field(default_factory=rules.RolePlan)
    unmapped: list[str] = field(default_factory=list)  # roles of the file that [roles] does not name

    def summary(self) -> dict[str, Any]:
        p = self.plan
        added = [d for d in p.granted if d.action == "add"]
        removed = [d for d in p.granted if d.action == "remove"]
        return {"tenant": self.tenant, "file": self.file, "replace": self.replace, "rows": self.rows,
                "assigned": len(added), "removed": len(removed),
                "seats_taken": sum(len(d.takes) for d in added),
                "seats_returned": sum(len(d.returns) for d in removed),
                "refused": [{"user_id": d.user_id, "role": d.role, "reason": str(d.reason), "pool": d.pool,
                             "sentence": d.sentence} for d in p.refused],
                "pools": [x.as_dict() for x in p.pools], "roles_without_pool": self.unmapped}

    def line(self) -> str:
        s = self.summary()
        free = f"; role(s) that need no pool (not in [roles]): {', '.join(self.unmapped)}" if self.unmapped else ""
        return (f"{self.tenant}: imported {self.rows} rows from {self.file}{' (replace)' if self.replace else ''} — "
                f"roles +{s['assigned']} −{s['removed']}, pool seats +{s['seats_taken']} −{s['seats_returned']}, "
                f"{len(s['refused'])} refused{free}")


def import_roles(session: Session, settings: Settings, tenant: str, path: Path, *, replace: bool, now: datetime,
                 actor: str = "cli") -> RoleImportResult:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    pairs = rules.parse_roles(data)
    role_terms(session, tenant)
    if replace and not pairs:
        raise InputError(f"{path} has no rows: with --replace it would remove every role of tenant {tenant}; refused")
    remove: list[tuple[str, str]] = []
    if replace:
        wanted = set(pairs)
        current = session.connection().execute(select(_RA.c.user_id, _RA.c.role).where(_RA.c.tenant == tenant))
        remove = sorted((u, r) for u, r in current if (u, r) not in wanted)
    known = mapping(settings)
    result = RoleImportResult(tenant, Path(path).name, replace, len(pairs),
                              unmapped=sorted({r for _u, r in pairs if r not in known}))
    result.plan = change_roles(session, settings, tenant, add=pairs, remove=remove, now=now, actor=actor)
    session.connection().execute(insert(_AU), [{"at": now, "tenant": tenant, "actor": actor,
                                                 "action": "roles_imported", "subject": result.file,
                                                 "detail": result.summary()}])
    return result


# --------------------------------------------------------------------------- reports and sign-ins


def pools_now(session: Session, tenant: str, terms: Terms) -> list[rules.Pool]:
    """The key's pools (and pools that still hold seats after leaving the key), read-only."""
    conn = session.connection()
    counts = dict(conn.execute(select(_PS.c.pool, func.count()).where(_PS.c.tenant == tenant)
                               .group_by(_PS.c.pool)).all())
    totals = key_pools(terms)
    return [rules.Pool(p, totals.get(p, 0), int(counts.get(p, 0))) for p in sorted(set(totals) | set(counts))]


def inactive_assignments(session: Session, tenant: str, now: datetime, days: int) -> list[dict[str, Any]] | None:
    """Pool seats whose user has not signed in for ``days``; None until sign-ins were read once."""
    conn = session.connection()
    read_at = conn.execute(select(func.max(_SI.c.read_at)).where(_SI.c.tenant == tenant)).scalar_one_or_none()
    if read_at is None:
        return None
    seats = [(u, p, at) for u, p, at in conn.execute(
        select(_PS.c.user_id, _PS.c.pool, _PS.c.acquired_at).where(_PS.c.tenant == tenant))]
    last = {u: at for u, at in conn.execute(select(_SI.c.user_id, _SI.c.last_sign_in_at).where(
        _SI.c.tenant == tenant, _SI.c.user_id.in_(sorted({s[0] for s in seats}))))}
    return [{"user_id": u, "pool": p, "last_sign_in_at": _iso(seen)}
            for u, p, seen in rules.inactive(seats, last, now, days)]


def pool_report(session: Session, settings: Settings | None, tenant: str, now: datetime,
                days: int | None = None) -> dict[str, Any]:
    terms = role_terms(session, tenant)
    days = days or inactive_days(settings)
    inactive = inactive_assignments(session, tenant, now, days)
    per_pool: dict[str, int] = defaultdict(int)
    for x in inactive or []:
        per_pool[x["pool"]] += 1
    read_at = session.connection().execute(select(func.max(_SI.c.read_at)).where(_SI.c.tenant == tenant)).scalar()
    pools = [p.as_dict() | {"inactive": None if inactive is None else per_pool.get(p.name, 0)}
             for p in pools_now(session, tenant, terms)]
    return {"tenant": tenant, "inactive_days": days, "sign_ins_read_at": _iso(read_at), "pools": pools,
            "inactive": inactive}


def store_sign_ins(session: Session, tenant: str, pairs: Iterable[tuple[str, datetime | None]], now: datetime) -> int:
    rows = [{"tenant": tenant, "user_id": uid, "last_sign_in_at": at, "read_at": now} for uid, at in pairs]
    if not rows:
        return 0
    conn = session.connection()
    ins: Any = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(_SI)
    stmt = ins.on_conflict_do_update(index_elements=["tenant", "user_id"],
                                     set_={"last_sign_in_at": ins.excluded.last_sign_in_at,
                                           "read_at": ins.excluded.read_at})
    for i in range(0, len(rows), 2000):
        conn.execute(stmt, rows[i : i + 2000])
    return len(rows)


async def refresh_sign_ins(tenant: TenantConfig, engine: Engine, now: datetime, *, client: Any = None) -> int:
    """Read every user's last sign-in from Graph and store it; returns the number of users read."""

    graph = client or GraphClient(tenant)
    pairs: list[tuple[str, datetime | None]] = []
    try:
        async for page in graph.users_sign_in_activity():
            pairs.extend(page)
    finally:
        if client is None:
            await graph.aclose()
    with session_scope(engine) as s:
        return store_sign_ins(s, tenant.name, pairs, now)
