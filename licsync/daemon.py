"""``licsync run`` and ``licsync serve``: the scheduler and the API in one asyncio loop.

Daemon hygiene (STYLE §9):

* a heartbeat row every ``HEARTBEAT_EVERY`` (``licsync health`` reads it), and an in-process
  liveness tick that ``/healthz`` checks, so a wedged loop turns the probe red;
* SIGTERM/SIGINT: no new cycles; the running ones get ``shutdown_timeout`` seconds to finish, then
  are abandoned — a cycle's delta round is one transaction, so an abandoned cycle leaves nothing
  half-applied and the next start simply resumes (its ``running`` row is marked ``abandoned``);
  exit status 0;
* replicas: each tenant's cycle holds ``pg_try_advisory_lock(hashtext('licsync:'||tenant))`` on a
  connection of its own for the whole cycle. SQLite has no such lock: one process-wide lock (SQLite
  has a single writer anyway) plus a lease row that another process respects while its owner's
  heartbeat is fresh.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from sqlalchemy import delete, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session

from licsync import reseat
from licsync.api import create_app
from licsync.api.connections import protocol_class, raise_open_files_limit
from licsync.config import ApiConfig, Settings
from licsync.db import session_scope
from licsync.db.models import Heartbeat
from licsync.errors import ConfigError, truncate
from licsync.health import HEARTBEAT_EVERY, LEASE_PREFIX, STALE_AFTER, instance_alive
from licsync.log import get_logger
from licsync.notify.factory import build_transport
from licsync.notify.outbox import drain
from licsync.retention import daily_purge
from licsync.scheduler import Jobs, SyncScheduler, in_thread
from licsync.service import sync_once

SHUTDOWN_TIMEOUT = 25.0  # under Kubernetes' default 30 s termination grace period


def instance_id() -> str:
    """``host:pid``: unique per daemon; ``licsync health`` matches this host's daemons by prefix."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}"


# --------------------------------------------------------------------------- locks

PG_RETRY_FOR = 3.0  # seconds a cycle retries a taken advisory lock before leaving the tenant to its holder


def _acquire(lock: threading.Lock, wait: float) -> bool:
    return lock.acquire(timeout=wait) if wait > 0 else lock.acquire(blocking=False)



class Locks:
    """Per-tenant (and per-job) mutual exclusion across threads, processes and replicas."""

    def __init__(self, engine: Engine, owner: str, lease_ttl: timedelta = timedelta(hours=6)) -> None:
        self.engine, self.owner, self.lease_ttl = engine, owner, lease_ttl
        self.postgres = engine.dialect.name == "postgresql"
        self._local: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @staticmethod
    def key(name: str, kind: str = "tenant") -> str:
        return f"licsync:{name}" if kind == "tenant" else f"licsync-{kind}:{name}"

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._local.setdefault(key, threading.Lock())

    @contextmanager
    def hold(self, name: str, kind: str = "tenant", *, wait: float = 0.0) -> Iterator[bool]:
        """Try the lock; yields whether it is held (the caller skips when not).

        PostgreSQL: the advisory lock, never waited for (another replica is working on it).
        SQLite: the key's process lock, then the process-wide *writer* lock — SQLite has one writer,
        so a second long transaction would only fail on ``database is locked``. Cycles pass
        ``wait`` to queue behind another tenant's cycle; short jobs skip and come back."""
        key = self.key(name, kind)
        if self.postgres:
            with self._pg(key, min(wait, PG_RETRY_FOR)) as got:
                yield got
            return
        mine, writer = self._lock(key), self._lock("sqlite-writer")
        if not _acquire(mine, wait):
            yield False
            return
        try:
            if not _acquire(writer, wait):
                yield False
                return
            try:
                got = self._take_lease(key)
                try:
                    yield got
                finally:
                    if got:
                        self._drop_lease(key)
            finally:
                writer.release()
        finally:
            mine.release()

    @contextmanager
    def _pg(self, key: str, retry_for: float) -> Iterator[bool]:
        # AUTOCOMMIT: the lock is session-level and the connection must not idle in a transaction.
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            deadline = time.monotonic() + retry_for
            while True:  # a moment's retry rides out this tenant's short grace job; a replica's cycle not
                got = bool(conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": key}).scalar())
                if got or time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
            try:
                yield got
            finally:
                if got:
                    with suppress(DBAPIError):  # a dead connection released it already
                        conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": key})

    def _take_lease(self, key: str) -> bool:
        # SQLite answers "busy" at once when a read-then-write transaction races another writer
        # (WAL snapshot): a few quick retries, then give up on this round.
        for attempt in range(5):
            got = self._try_lease(key)
            if got is not None:
                return got
            time.sleep(0.05 * (attempt + 1))
        return False

    def _try_lease(self, key: str) -> bool | None:
        """True: leased; False: a live daemon holds it; None: the database was busy."""
        now = datetime.now(UTC)
        try:
            with session_scope(self.engine) as s:
                row = s.get(Heartbeat, LEASE_PREFIX + key)
                owner = str((row.detail or {}).get("owner")) if row is not None else ""
                if row is not None and owner != self.owner and row.beat_at > now and _owner_alive(s, owner, now):
                    return False  # a live daemon, or a live `licsync sync`, holds it
                if row is None:
                    row = Heartbeat(instance=LEASE_PREFIX + key, beat_at=now)
                    s.add(row)
                row.beat_at, row.started_at, row.detail = now + self.lease_ttl, now, {"owner": self.owner}
            return True
        except (IntegrityError, DBAPIError):  # another process took it in the same instant, or busy
            return None

    def _drop_lease(self, key: str) -> None:
        with suppress(DBAPIError), session_scope(self.engine) as s:
            row = s.get(Heartbeat, LEASE_PREFIX + key)
            if row is not None and (row.detail or {}).get("owner") == self.owner:
                s.delete(row)


# --------------------------------------------------------------------------- heartbeat


class HeartbeatWriter:
    """Writes this daemon's heartbeat row; knows whether the loop still ticks (``/healthz``)."""

    def __init__(self, engine: Engine, instance: str, detail: Callable[[], dict[str, Any]] | None = None) -> None:
        self.engine, self.instance, self.detail = engine, instance, detail or dict
        self.started_at = datetime.now(UTC)
        self.ticked = time.monotonic()
        self.written_at: datetime | None = None
        self._writing = False
        self.log = get_logger(component="heartbeat", instance=instance)

    def write(self) -> None:
        now = datetime.now(UTC)
        with session_scope(self.engine) as s:
            row = s.get(Heartbeat, self.instance)
            if row is None:
                row = Heartbeat(instance=self.instance, started_at=self.started_at, beat_at=now)
                s.add(row)
            row.beat_at, row.detail = now, self.detail()
        self.written_at = now

    def _write_logged(self) -> None:
        try:
            self.write()
        except Exception as exc:
            self.log.warning("heartbeat_write_failed", error=truncate(str(exc)))
        finally:
            self._writing = False

    async def beat(self) -> None:
        """Mark the loop alive, then write the row in a thread without awaiting it: on SQLite a long
        cycle holds the single write lock, and a blocked write must not stop the loop's ticks."""
        self.ticked = time.monotonic()
        if self._writing:
            return
        self._writing = True
        in_thread(self._write_logged, name="heartbeat")

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - self.ticked
        ok = age < STALE_AFTER.total_seconds()
        return ok, {"instance": self.instance, "heartbeat_age_s": round(age, 1),
                    "last_written": self.written_at.isoformat() if self.written_at else None}

    def remove(self) -> None:
        with suppress(DBAPIError), session_scope(self.engine) as s:
            s.execute(delete(Heartbeat).where(Heartbeat.instance == self.instance))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- default jobs


def evaluate_grace(engine: Engine, settings: Settings, tenant: str, now: datetime) -> None:
    """Between cycles: the same post-apply step a cycle runs (grace machine, its notifications),
    so an expiry at midnight or a window's end is acted on within a minute, not at the next sync."""
    with session_scope(engine) as s:
        reseat.after_change(s, settings, tenant, now)


def drain_outbox(engine: Engine, settings: Settings, now: datetime) -> Any:
    """Send what the outbox holds (runs in a worker thread, so it gets an event loop of its own)."""

    return asyncio.run(drain(engine, settings, build_transport(settings, engine=engine), now, limit=100))


def default_jobs() -> Jobs:

    return Jobs(cycle=sync_once, grace=evaluate_grace, drain=drain_outbox, purge=daily_purge)


# --------------------------------------------------------------------------- servers


def bind(settings: Settings) -> socket.socket:
    """Bind the API's socket up front, so a port in use is one clear error, not uvicorn's exit(1)."""
    host, port = settings.api.host, settings.api.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the socket says
    # it is TCP. Without it, Nagle holds the response body (a second small write after the headers)
    # until the client's delayed ACK: ~40 ms added to every keep-alive request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"api.listen: cannot listen on {settings.api.listen}: {exc.strerror}") from None
    sock.listen(512)
    sock.setblocking(False)
    return sock


LOOPS = ("auto", "asyncio", "uvloop")
HTTP_IMPLS = ("auto", "h11", "httptools")


def loop_factory(loop: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``run`` and ``serve`` use: uvloop when installed (``auto``), else asyncio's.

    uvloop (libuv) halves the loop's own cost per request; the API's hot path is mostly that."""
    if loop not in LOOPS:
        raise ConfigError(f"--loop: {loop!r} is not one of {', '.join(LOOPS)}")
    if loop == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415 - an optional accelerator, probed
    except ImportError:
        if loop == "uvloop":
            raise ConfigError("--loop uvloop: the uvloop package is not installed") from None
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def _run_loop(main: Any, loop: str) -> int:
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)  # type: ignore[no-any-return]


def _server(app: Any, http: str = "auto", limits: ApiConfig | None = None) -> Any:


    if http not in HTTP_IMPLS:
        raise ConfigError(f"--http: {http!r} is not one of {', '.join(HTTP_IMPLS)}")
    if http == "httptools":
        try:
            import httptools  # noqa: F401, PLC0415 - an optional accelerator, probed
        except ImportError:
            raise ConfigError("--http httptools: the httptools package is not installed") from None

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:  # we own SIGTERM/SIGINT: exit 0, not re-raised
            yield

    # http="auto": httptools (C parser) when installed, else h11 (pure Python, ~3× the parse cost), each
    # wrapped in licsync.api.connections' guard (header/body timeouts, header size, connection cap).
    # Forwarded headers are not uvicorn's business (proxy_headers=False): the API believes them only
    # from [api] trusted_proxies (licsync.api.auth.client_ip).
    limits = limits or ApiConfig()
    raise_open_files_limit()
    return Server(uvicorn.Config(app, http=protocol_class(http, limits), log_level="warning", access_log=False,
                                 lifespan="off", server_header=False, proxy_headers=False,
                                 timeout_graceful_shutdown=5,
                                 timeout_keep_alive=max(1, round(limits.keepalive_timeout.total_seconds())),
                                 h11_max_incomplete_event_size=limits.max_header_bytes))


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def _serve_until(stop: asyncio.Event, server: Any, sock: socket.socket) -> asyncio.Task[Any]:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    return task


async def _stop_server(server: Any, task: asyncio.Task[Any]) -> None:
    server.should_exit = True
    with suppress(asyncio.TimeoutError, asyncio.CancelledError, SystemExit):
        await asyncio.wait_for(task, timeout=10)


async def serve_api(settings: Settings, engine: Engine, *, clock: Callable[[], datetime] | None = None,
                    http: str = "auto") -> int:
    """``licsync serve``: the API and dashboard only, until SIGTERM/SIGINT."""

    server = _server(create_app(settings, engine, clock=clock), http, settings.api)
    sock = bind(settings)
    stop = asyncio.Event()
    _on_signals(stop)
    get_logger(component="serve").info("api_listening", listen=settings.api.listen)
    task = await _serve_until(stop, server, sock)
    await _stop_server(server, task)
    return 0


async def run_daemon_async(
    settings: Settings,
    engine: Engine,
    *,
    clock: Callable[[], datetime] | None = None,
    jobs: Jobs | None = None,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    heartbeat_every: timedelta = HEARTBEAT_EVERY,
    serve: bool = True,
) -> int:

    log = get_logger(component="daemon")
    instance = instance_id()
    sock = bind(settings) if serve else None
    stop = asyncio.Event()
    _on_signals(stop)
    sched = SyncScheduler(settings, engine, jobs or default_jobs(), Locks(engine, instance),
                          clock=clock or (lambda: datetime.now(UTC)))
    hb = HeartbeatWriter(engine, instance, lambda: {
        "tenants": [t.name for t in settings.tenant],
        "running": {r.tenant: r.kind for r in sched.running.values()},
        "quarantined": sorted(sched.quarantined), "pid": os.getpid()})
    await in_thread(hb.write, name="heartbeat")  # a first row before anything else: the daemon is up
    sched.start()
    sched.every("heartbeat", hb.beat, heartbeat_every)
    log.info("daemon_started", instance=instance, tenants=[t.name for t in settings.tenant],
             listen=settings.api.listen if serve else None)
    server, task = None, None
    if sock is not None:
        server = _server(create_app(settings, engine, clock=clock, liveness=hb.liveness), limits=settings.api)
        task = await _serve_until(stop, server, sock)
    else:
        await stop.wait()
    log.info("shutdown_requested", running=sorted(sched.running))
    abandoned = await sched.stop(shutdown_timeout)
    if server is not None and task is not None:
        await _stop_server(server, task)
    with suppress(Exception):
        await asyncio.wait_for(in_thread(hb.remove, name="heartbeat"), timeout=5)
    log.info("daemon_stopped", abandoned=abandoned)
    return 0


def run_daemon(settings: Settings, engine: Engine, **kwargs: Any) -> int:
    """``licsync run``: scheduler + API in one loop until SIGTERM/SIGINT; returns the exit status."""
    code = _run_loop(run_daemon_async(settings, engine, **kwargs), "auto")
    _ignore_late_signals()
    return code


def run_api(settings: Settings, engine: Engine, *, clock: Callable[[], datetime] | None = None,
            loop: str = "auto", http: str = "auto") -> int:
    """``licsync serve``: the API and dashboard only; returns the exit status."""
    loop_factory(loop)  # a bad choice is a ConfigError before anything starts
    code = _run_loop(serve_api(settings, engine, clock=clock, http=http), loop)
    _ignore_late_signals()
    return code


def _ignore_late_signals() -> None:
    """The loop is gone and with it our handlers; a repeated SIGTERM must not turn a clean stop into
    death by signal while the interpreter exits (SIGKILL still works)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        with suppress(ValueError):  # not the main thread
            signal.signal(sig, signal.SIG_IGN)


def _owner_alive(s: Session, owner: str, now: datetime) -> bool:
    """Whether the owner of a lease still works: a daemon by its fresh heartbeat; a ``licsync sync``
    (``cli:host:pid``, no heartbeat) while its process exists — on another host, until the lease ends."""
    beat = s.get(Heartbeat, owner)
    if beat is not None:
        return bool(now - beat.beat_at < STALE_AFTER) and instance_alive(beat.instance)
    return owner.startswith("cli:") and instance_alive(owner.removeprefix("cli:"))
