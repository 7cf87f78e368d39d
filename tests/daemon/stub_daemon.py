"""A daemon whose cycle is a stub that records when it ran: ``python -m tests.daemon.stub_daemon``.

Used to test locking across processes without Graph: each cycle writes a ``SyncCycle`` row at its
start (committed, status ``running``), sleeps, and marks it ``ok`` with its end time. Two such
daemons on one PostgreSQL must never have overlapping rows for the same tenant.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from licsync import db, log
from licsync.config import Settings
from licsync.daemon import run_daemon
from licsync.db import session_scope
from licsync.db.models import SyncCycle
from licsync.scheduler import Jobs


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--tenants", default="t1,t2,t3")
    p.add_argument("--interval", default="1s")
    p.add_argument("--cycle-seconds", type=float, default=0.3)
    p.add_argument("--no-lock", action="store_true", help="a lock that always says yes (the test's control)")
    args = p.parse_args()
    log.configure("warning")
    settings = Settings.model_validate({
        "database": {"url": args.url},
        "tenant": [{"name": n, "tenant_id": f"tid-{n}", "client_id": "c", "client_secret": "env:NONE"}
                   for n in args.tenants.split(",")],
        "schedule": {"sync_interval": args.interval, "full_resync_interval": "24h"},
    })
    engine = db.get_engine(args.url)

    async def cycle(settings: Settings, tenant: Any, engine: Any, *, now: datetime, full: bool) -> None:
        with session_scope(engine) as s:
            row = SyncCycle(tenant=tenant.name, kind="full" if full else "delta", status="running",
                            started_at=datetime.now(UTC), summary={"pid": os.getpid()})
            s.add(row)
            s.flush()
            cycle_id = row.id
        await asyncio.sleep(args.cycle_seconds)
        with session_scope(engine) as s:
            done = s.get(SyncCycle, cycle_id)
            assert done is not None
            done.status, done.finished_at = "ok", datetime.now(UTC)

    if args.no_lock:
        import contextlib

        import licsync.daemon

        class NoLocks(licsync.daemon.Locks):
            @contextlib.contextmanager
            def hold(self, name: str, kind: str = "tenant", *, wait: float = 0.0) -> Iterator[bool]:
                yield True

        licsync.daemon.Locks = NoLocks  # type: ignore[misc]
    return run_daemon(settings, engine, jobs=Jobs(cycle=cycle), shutdown_timeout=10, serve=False)


if __name__ == "__main__":
    raise SystemExit(main())
