"""When each tenant syncs next (pure), and the APScheduler wiring that acts on it.

``next_run`` is a pure function of the tenant's ``SyncState`` and the configured intervals, so the
schedule survives restarts and is shared by replicas: whichever replica ran the last cycle, the
others read the same state and agree on the next one. Failures back off exponentially from
``sync_interval`` up to once a day (as Entra ID provisioning does before it quarantines a job), and
after ``QUARANTINE_AFTER`` failures in a row the tenant is reported as quarantined.

The scheduler only decides when. Each job runs in a worker thread with its own event loop: a cycle
does blocking database work, and the API answering launch-time access checks shares the daemon's
loop. Each tenant's cycle holds that tenant's lock (``licsync.daemon.Locks``: a PostgreSQL advisory
lock, or a process lock plus a lease row on SQLite), so replicas split tenants and no cycle of a
tenant ever runs twice at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync import metrics
from licsync.config import Settings, TenantConfig
from licsync.db.models import SyncState
from licsync.errors import LicsyncError, TransientError, truncate
from licsync.log import get_logger

QUARANTINE_AFTER = 6
MAX_BACKOFF = timedelta(days=1)
GRACE_EVERY = timedelta(minutes=1)  # expiry and window ends are noticed within a minute
DRAIN_EVERY = timedelta(seconds=30)
PURGE_EVERY = timedelta(days=1)  # the retention policy ([retention]); replicas take turns on its lock
LOCK_RETRY = timedelta(seconds=60)  # another replica holds the tenant: look again (capped by sync_interval)
WRITER_WAIT = timedelta(minutes=15)  # SQLite only: a cycle queues this long behind another tenant's

T = TypeVar("T")
Clock = Callable[[], datetime]
CycleFn = Callable[..., Awaitable[Any]]  # async (settings, tenant_cfg, engine, *, now, full) -> Any
GraceFn = Callable[[Engine, Settings, str, datetime], Any]
DrainFn = Callable[[Engine, Settings, datetime], Any]


# --------------------------------------------------------------------------- pure


@dataclass(frozen=True)
class NextRun:
    """When the next delta cycle and the next full resync are due (instants may be in the past)."""

    delta_at: datetime
    full_at: datetime
    backoff: timedelta = timedelta(0)  # zero while healthy
    quarantined: bool = False

    @property
    def at(self) -> datetime:
        return min(self.delta_at, self.full_at)

    def due(self, now: datetime) -> str | None:
        """``full`` (it covers a delta too), ``delta``, or None when nothing is due yet."""
        if self.full_at <= now:
            return "full"
        if self.delta_at <= now:
            return "delta"
        return None


def backoff_for(failures: int, sync_interval: timedelta, cap: timedelta = MAX_BACKOFF) -> timedelta:
    """``sync_interval × 2^(failures−1)``, capped: 1 failure keeps the cadence, each next one doubles it."""
    if failures <= 0:
        return timedelta(0)
    return min(cap, sync_interval * (2 ** min(failures - 1, 32)))


def next_run(
    *,
    now: datetime,
    sync_interval: timedelta,
    full_resync_interval: timedelta,
    last_attempt_at: datetime | None = None,
    last_success_at: datetime | None = None,
    last_full_at: datetime | None = None,
    consecutive_failures: int = 0,
    not_before: datetime | None = None,
    max_backoff: timedelta = MAX_BACKOFF,
    quarantine_after: int = QUARANTINE_AFTER,
) -> NextRun:
    """The next delta and full instants for one tenant.

    * never synced: a full resync at once;
    * healthy: delta ``sync_interval`` after the last success, full ``full_resync_interval`` after
      the last full one (at once if there never was one);
    * failing: nothing before ``last attempt + backoff`` — a full resync waits for the gate too;
    * ``not_before`` (a server's Retry-After) pushes both later, never earlier.
    """
    failures = max(0, consecutive_failures)
    if last_attempt_at is None and last_success_at is None:
        first = max(now, not_before) if not_before else now
        return NextRun(first, first)
    full_at = last_full_at + full_resync_interval if last_full_at is not None else now
    backoff = backoff_for(failures, sync_interval, max_backoff)
    if failures == 0:
        base = last_success_at or last_attempt_at
        assert base is not None
        delta_at = base + sync_interval
    else:
        gate = (last_attempt_at or last_success_at or now) + backoff
        delta_at = gate
        full_at = max(full_at, gate)
    if not_before is not None:
        delta_at, full_at = max(delta_at, not_before), max(full_at, not_before)
    return NextRun(delta_at, full_at, backoff, failures >= quarantine_after)


def next_run_of(state: Any, settings: Settings, now: datetime, not_before: datetime | None = None) -> NextRun:
    """``next_run`` for a ``SyncState`` row (or None: never synced)."""
    s = settings.schedule
    if state is None:
        return next_run(now=now, sync_interval=s.sync_interval, full_resync_interval=s.full_resync_interval,
                        not_before=not_before)
    return next_run(
        now=now,
        sync_interval=s.sync_interval,
        full_resync_interval=s.full_resync_interval,
        last_attempt_at=state.last_attempt_at,
        last_success_at=state.last_success_at,
        last_full_at=state.last_full_at,
        consecutive_failures=state.consecutive_failures,
        not_before=max(filter(None, (not_before, state.next_attempt_at)), default=None),
    )


# --------------------------------------------------------------------------- wiring


def in_thread(fn: Callable[..., T], *args: Any, name: str = "licsync-job") -> asyncio.Future[T]:
    """Run ``fn`` in a daemon thread; the future resolves on the caller's loop.

    Daemon threads, not the loop's default executor: at shutdown an abandoned cycle must not keep
    the process alive (its transaction is all-or-nothing, so dropping it is safe)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def done(ok: bool, value: Any) -> None:
        if fut.cancelled():
            return
        fut.set_result(value) if ok else fut.set_exception(value)

    def target() -> None:
        try:
            result: Any = (True, fn(*args))
        except BaseException as exc:  # handed to the awaiting coroutine
            result = (False, exc)
        with suppress(RuntimeError):  # the loop is gone: the process is exiting
            loop.call_soon_threadsafe(done, *result)

    threading.Thread(target=target, name=name, daemon=True).start()
    return fut


@dataclass
class Running:
    tenant: str
    kind: str
    started_at: datetime
    future: asyncio.Future[Any]


@dataclass
class Jobs:
    """What the scheduler runs; injectable so tests can stub a cycle."""

    cycle: CycleFn
    grace: GraceFn | None = None
    drain: DrainFn | None = None
    purge: Callable[[Engine, Settings, datetime], Any] | None = None


@dataclass
class SyncScheduler:
    """One AsyncIOScheduler: per tenant a self-rescheduling sync job and a grace job; one outbox drain."""

    settings: Settings
    engine: Engine
    jobs: Jobs
    locks: Any  # licsync.daemon.Locks: .hold(name) -> context manager yielding bool
    clock: Clock = field(default=lambda: datetime.now(UTC))
    tenants: list[TenantConfig] | None = None
    running: dict[str, Running] = field(default_factory=dict)
    stopping: bool = False
    quarantined: set[str] = field(default_factory=set)
    _retry_at: dict[str, datetime] = field(default_factory=dict)
    _sched: Any = None

    def __post_init__(self) -> None:
        self.log = get_logger(component="scheduler")
        if self.tenants is None:
            self.tenants = list(self.settings.tenant)

    def start(self) -> None:

        self._sched = AsyncIOScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        for t in self.tenants or []:
            self._at(f"sync:{t.name}", self._sync_job, datetime.now(UTC), t)
            if self.jobs.grace is not None:
                self.every(f"grace:{t.name}", self._grace_job, GRACE_EVERY, t.name)
        if self.jobs.drain is not None:
            self.every("outbox", self._drain_job, DRAIN_EVERY)
        if self.jobs.purge is not None:
            self.every("purge", self._purge_job, PURGE_EVERY)
        self._sched.start()

    def every(self, job_id: str, fn: Callable[..., Any], interval: timedelta, *args: Any) -> None:
        self._sched.add_job(fn, "interval", seconds=interval.total_seconds(), id=job_id, args=args,
                            replace_existing=True, next_run_time=datetime.now(UTC))

    def _at(self, job_id: str, fn: Callable[..., Any], when: datetime, *args: Any) -> None:
        if self.stopping or self._sched is None:
            return
        self._sched.add_job(fn, "date", run_date=when, id=job_id, args=args, replace_existing=True)

    def _reschedule(self, tenant: TenantConfig, clock_at: datetime) -> None:
        """Schedule at a clock instant; APScheduler runs on wall time, the clock may be offset."""
        now = self.clock()
        wall = datetime.now(UTC) + max(timedelta(seconds=1), clock_at - now)
        self._at(f"sync:{tenant.name}", self._sync_job, wall, tenant)

    def plan(self, tenant: str, now: datetime) -> NextRun:


        with Session(self.engine) as s:
            state = s.get(SyncState, tenant)
        return next_run_of(state, self.settings, now, self._retry_at.get(tenant))

    async def _sync_job(self, tenant: TenantConfig) -> None:
        if self.stopping:
            return
        now = self.clock()
        interval = self.settings.schedule.sync_interval
        try:
            nr = await in_thread(self.plan, tenant.name, now, name=f"plan:{tenant.name}")
        except Exception as exc:  # the database is away: look again later
            self.log.warning("schedule_read_failed", tenant=tenant.name, error=truncate(str(exc)))
            self._reschedule(tenant, now + min(interval, LOCK_RETRY))
            return
        self._report_quarantine(tenant.name, nr)
        kind = nr.due(now)
        if kind is None:
            self._reschedule(tenant, nr.at)
            return
        ran = False
        try:
            ran = await self.run_cycle(tenant, kind, recheck=True)
        except asyncio.CancelledError:
            if self.stopping:  # the loop is closing after an abandoned cycle: nothing to report
                return
            raise
        except Exception as exc:  # recorded by the cycle itself; the schedule backs off
            retry = getattr(exc, "retry_after", None) if isinstance(exc, TransientError) else None
            if retry:
                self._retry_at[tenant.name] = self.clock() + timedelta(seconds=float(retry))
            self.log.warning("cycle_failed", tenant=tenant.name, kind=kind, error=truncate(str(exc)),
                             error_type=type(exc).__name__, exc_info=not isinstance(exc, LicsyncError))
        else:
            self._retry_at.pop(tenant.name, None)
        if self.stopping:
            return
        later = self.clock()
        try:
            nxt = await in_thread(self.plan, tenant.name, later, name=f"plan:{tenant.name}")
            when = nxt.at
        except Exception:
            when = later + min(interval, LOCK_RETRY)
        if not ran:  # another replica holds the tenant
            when = max(when, later + min(interval, LOCK_RETRY))
        # A cycle that failed without recording it (database away) must not spin.
        self._reschedule(tenant, max(when, later + min(interval, timedelta(seconds=5))))

    async def run_cycle(self, tenant: TenantConfig, kind: str, *, recheck: bool = False) -> bool:
        """Run one cycle under the tenant's lock in a worker thread. False when the lock is taken.

        ``recheck``: a scheduled cycle asks again, under the lock, whether it is still due."""
        fut = in_thread(self._locked_cycle, tenant, kind, recheck, name=f"cycle:{tenant.name}")
        self.running[tenant.name] = Running(tenant.name, kind, self.clock(), fut)
        try:
            return await asyncio.shield(fut)
        finally:
            if self.running.get(tenant.name) is not None and self.running[tenant.name].future is fut:
                del self.running[tenant.name]

    def due_under_lock(self, tenant: str) -> str | None:
        """What is due now, read again once the tenant's lock is held.

        The plan was read before the lock: another replica may have run this very cycle and released
        the lock in between (a taken lock is retried for a few seconds). Without this second look
        that replica's cycle would run twice."""
        now = self.clock()
        return self.plan(tenant, now).due(now)

    def _locked_cycle(self, tenant: TenantConfig, kind: str, recheck: bool = False) -> bool:
        with self.locks.hold(tenant.name, wait=WRITER_WAIT.total_seconds()) as got:
            if not got:
                self.log.info("tenant_busy", tenant=tenant.name, note="its lock is held elsewhere (another replica)")
                return False
            if self.stopping:
                return False
            if recheck:
                again = self.due_under_lock(tenant.name)
                if again is None:
                    self.log.info("cycle_not_due", tenant=tenant.name, note="another replica ran it meanwhile")
                    return True
                kind = again
            started, status, ran_kind = time.monotonic(), "failed", kind
            try:
                result = asyncio.run(self.jobs.cycle(self.settings, tenant, self.engine, now=self.clock(),
                                                     full=kind == "full"))
                status, ran_kind = metrics.cycle_status(result), getattr(result, "kind", kind)
            finally:
                metrics.observe_cycle(tenant.name, ran_kind, status, time.monotonic() - started)
            return True

    def _report_quarantine(self, tenant: str, nr: NextRun) -> None:
        if nr.quarantined and tenant not in self.quarantined:
            self.quarantined.add(tenant)
            self.log.error("tenant_quarantined", tenant=tenant, backoff_s=nr.backoff.total_seconds(),
                           note=f"{QUARANTINE_AFTER}+ failed cycles in a row; retrying at most once a day")
        elif not nr.quarantined:
            self.quarantined.discard(tenant)

    def _grace_locked(self, tenant: str) -> None:
        assert self.jobs.grace is not None
        with self.locks.hold(tenant) as got:
            if got and not self.stopping:  # when busy, the running cycle evaluates grace itself
                self.jobs.grace(self.engine, self.settings, tenant, self.clock())

    async def _grace_job(self, tenant: str) -> None:
        if self.stopping:
            return
        try:
            await in_thread(self._grace_locked, tenant, name=f"grace:{tenant}")
        except Exception as exc:
            self.log.warning("grace_evaluation_failed", tenant=tenant, error=truncate(str(exc)))

    def _drain_locked(self) -> None:
        assert self.jobs.drain is not None
        with self.locks.hold("outbox", kind="job") as got:
            if got and not self.stopping:
                self.jobs.drain(self.engine, self.settings, self.clock())

    async def _drain_job(self) -> None:
        if self.stopping:
            return
        try:
            await in_thread(self._drain_locked, name="outbox")
        except Exception as exc:
            self.log.warning("outbox_drain_failed", error=truncate(str(exc)))

    def _purge_locked(self) -> None:
        assert self.jobs.purge is not None
        with self.locks.hold("purge", kind="job") as got:
            if got and not self.stopping:
                self.jobs.purge(self.engine, self.settings, self.clock())

    async def _purge_job(self) -> None:
        if self.stopping:
            return
        try:
            await in_thread(self._purge_locked, name="purge")
        except Exception as exc:
            self.log.warning("purge_failed", error=truncate(str(exc)))

    async def stop(self, timeout: float) -> list[str]:
        """Take no new work, wait up to ``timeout`` s for running cycles; return the tenants abandoned."""
        self.stopping = True
        if self._sched is not None and self._sched.running:
            self._sched.shutdown(wait=False)
        pending = {r.future: r.tenant for r in self.running.values() if not r.future.done()}
        if not pending:
            return []
        self.log.info("waiting_for_cycles", tenants=sorted(pending.values()), timeout_s=timeout)
        _done, not_done = await asyncio.wait(list(pending), timeout=timeout)
        abandoned = sorted(pending[f] for f in not_done)
        for t in abandoned:
            self.log.warning("cycle_abandoned", tenant=t,
                             note="its transaction never commits: nothing is half-applied; the next start resumes")
        return abandoned
