"""Many tenants × several ``licsync run`` replicas on one PostgreSQL, in simulated time.

Each replica is a real :class:`~licsync.scheduler.SyncScheduler` (its ``plan`` reads ``SyncState``
and applies the pure ``next_run``; ``due_under_lock`` is its second look once the lock is held)
with PostgreSQL advisory locks taken as :class:`~licsync.daemon.Locks` takes them (same key, same
``pg_try_advisory_lock(hashtext(…))``), but on one connection per replica: a connection per held
lock, as the daemon has, would need 300 connections at the first instant of a 300-tenant run, more
than a shared server allows. What APScheduler and the worker threads do in ``_sync_job`` is replayed as events on a
simulated clock, so an hour of 300 tenants takes seconds:

* plan → not due: look again at the planned instant (at least 1 s later);
* plan → due: try the lock; a taken lock is retried for ``PG_RETRY_FOR`` (3 s) — if its holder
  releases it within that time, this replica gets it; otherwise look again ``LOCK_RETRY`` later;
* lock held: look again (``due_under_lock``), then the cycle runs for a random duration; at its end
  one transaction records it (``SyncCycle``) and its ``SyncState``, the lock is released, and the
  replica plans the tenant's next cycle (at least 5 s later).

Reported: cycles per replica (the spread), double cycles (a cycle of a tenant overlapping another,
or starting less than ``sync_interval`` after the previous one) and missed intervals (a tenant
whose next cycle starts later than ``sync_interval`` + ``slack`` after the previous one).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, delete, text
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from licsync.config import Settings
from licsync.daemon import PG_RETRY_FOR, Locks
from licsync.db.models import SyncCycle, SyncState
from licsync.scheduler import LOCK_RETRY, Jobs, SyncScheduler

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


@dataclass
class SimResult:
    cycles: list[tuple[str, int, datetime, datetime]]  # tenant, replica, start, end
    per_replica: Counter[int]
    doubles: list[str]
    missed: list[str]
    rechecks_saved: int  # cycles the second look under the lock did not run (another replica had)
    events: int


class _SessionLocks:
    """``Locks``' PostgreSQL advisory locks (its keys, its SQL) on one connection of a replica's own."""

    def __init__(self, engine: Any) -> None:
        self.conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def take(self, tenant: str) -> bool:
        q = text("SELECT pg_try_advisory_lock(hashtext(:k))")
        return bool(self.conn.execute(q, {"k": Locks.key(tenant)}).scalar())

    def release(self, tenant: str) -> None:
        self.conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": Locks.key(tenant)})

    def close(self) -> None:
        self.conn.close()


@dataclass
class _Replica:
    index: int
    sched: SyncScheduler
    locks: _SessionLocks
    held: set[str] = field(default_factory=set)


def simulate(
    url: str,
    *,
    tenants: int,
    replicas: int = 3,
    hours: float = 1.0,
    interval: timedelta = timedelta(minutes=15),
    cycle_seconds: tuple[float, float] = (5.0, 90.0),
    recheck: bool = True,
    seed: int = 1,
    slack: timedelta = timedelta(seconds=5),
) -> SimResult:
    """Run the simulation on the migrated database at ``url`` (its sync state and cycles are cleared first)."""
    rng = random.Random(seed)
    with Session(create_engine(url, poolclass=NullPool)) as s:
        s.execute(delete(SyncCycle))
        s.execute(delete(SyncState))
        s.commit()
    now = T0
    settings = Settings.model_validate(
        {
            "database": {"url": url},
            "tenant": [
                {"name": f"t{i:03d}", "tenant_id": f"tid-{i}", "client_id": "c", "client_secret": "env:NONE"}
                for i in range(tenants)
            ],
            "schedule": {"sync_interval": f"{interval.total_seconds():g}s", "full_resync_interval": "24h"},
        }
    )
    names = [t.name for t in settings.tenant]
    engines = [create_engine(url, pool_size=2, max_overflow=0) for _ in range(replicas)]
    reps = [
        _Replica(
            i,
            SyncScheduler(settings, engines[i], Jobs(cycle=_never), Locks(engines[i], f"sim:{i}"), clock=lambda: now),
            _SessionLocks(engines[i]),
        )
        for i in range(replicas)
    ]
    holder_release: dict[str, datetime] = {}  # tenant -> when its running cycle ends
    events: list[tuple[datetime, int, str, int, str, Any]] = []
    seq = itertools.count()

    def at(when: datetime, kind: str, rep: int, tenant: str, data: Any = None) -> None:
        heapq.heappush(events, (when, next(seq), kind, rep, tenant, data))

    for r in reps:
        for name in names:
            at(T0 + timedelta(seconds=rng.uniform(0, 2)), "plan", r.index, name)
    end = T0 + timedelta(hours=hours)
    cycles: list[tuple[str, int, datetime, datetime]] = []
    saved = handled = 0
    try:
        while events and events[0][0] < end:
            now, _n, kind, i, tenant, data = heapq.heappop(events)
            handled += 1
            r = reps[i]
            if kind == "plan":
                nr = r.sched.plan(tenant, now)
                due = nr.due(now)
                if due is None:
                    at(max(nr.at, now + timedelta(seconds=1)), "plan", i, tenant)
                else:
                    at(now, "lock", i, tenant, (due, now + timedelta(seconds=PG_RETRY_FOR)))
            elif kind == "lock":
                due, deadline = data
                if r.locks.take(tenant):
                    if recheck:
                        again = r.sched.due_under_lock(tenant)
                        if again is None:
                            r.locks.release(tenant)
                            saved += 1
                            nxt = r.sched.plan(tenant, now)
                            at(max(nxt.at, now + timedelta(seconds=5)), "plan", i, tenant)
                            continue
                        due = again
                    r.held.add(tenant)
                    finish = now + timedelta(seconds=rng.uniform(*cycle_seconds))
                    holder_release[tenant] = finish
                    at(finish, "end", i, tenant, (due, now))
                else:
                    release = holder_release.get(tenant)
                    if release is not None and release <= deadline:  # the retry loop gets it then
                        at(release + timedelta(milliseconds=1), "lock", i, tenant, (due, deadline))
                    else:
                        nr = r.sched.plan(tenant, now)
                        at(max(nr.at, now + min(interval, LOCK_RETRY)), "plan", i, tenant)
            else:  # end
                due, started = data
                _record(r.sched.engine, tenant, due, started, now, i)
                cycles.append((tenant, i, started, now))
                r.held.discard(tenant)
                r.locks.release(tenant)
                holder_release.pop(tenant, None)
                nxt = r.sched.plan(tenant, now)
                at(max(nxt.at, now + timedelta(seconds=5)), "plan", i, tenant)
    finally:
        for r in reps:
            r.locks.close()  # its session's advisory locks go with it
        for e in engines:
            e.dispose()
    return _judge(cycles, names, interval, slack, end, saved, handled)


async def _never(*_a: Any, **_k: Any) -> None:  # pragma: no cover - cycles are simulated, not run
    raise AssertionError("the simulation runs no real cycle")


def _record(engine: Any, tenant: str, kind: str, started: datetime, ended: datetime, replica: int) -> None:
    """What a successful cycle commits: its row and the tenant's state, in one transaction."""
    with Session(engine) as s:
        st = s.get(SyncState, tenant) or SyncState(tenant=tenant)
        st.last_success_at = st.last_attempt_at = started
        if kind == "full":
            st.last_full_at = started
        st.consecutive_failures = 0
        s.add(st)
        s.add(
            SyncCycle(
                tenant=tenant,
                kind=kind,
                status="ok",
                started_at=started,
                finished_at=ended,
                summary={"replica": replica},
            )
        )
        s.commit()


def _judge(
    cycles: list[tuple[str, int, datetime, datetime]],
    names: list[str],
    interval: timedelta,
    slack: timedelta,
    end: datetime,
    saved: int,
    handled: int,
) -> SimResult:
    by_tenant: dict[str, list[tuple[str, int, datetime, datetime]]] = defaultdict(list)
    for c in cycles:
        by_tenant[c[0]].append(c)
    doubles: list[str] = []
    missed: list[str] = []
    for name in names:
        cs = sorted(by_tenant.get(name, []), key=lambda c: c[2])
        if not cs or cs[0][2] > T0 + slack:
            missed.append(f"{name}: first cycle late or never")
            continue
        for a, b in itertools.pairwise(cs):
            if b[2] < a[3] or b[2] - a[2] < interval - timedelta(seconds=1):
                doubles.append(f"{name}: replica {b[1]} at {b[2]:%H:%M:%S} after replica {a[1]} at {a[2]:%H:%M:%S}")
            elif b[2] - a[2] > interval + slack:
                missed.append(f"{name}: {b[2] - a[2]} between cycles")
        if end - cs[-1][2] > interval + slack:
            missed.append(f"{name}: no cycle since {cs[-1][2]:%H:%M:%S}")
    return SimResult(cycles, Counter(c[1] for c in cycles), doubles, missed, saved, handled)
