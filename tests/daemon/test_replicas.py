"""Two daemons on one PostgreSQL split the tenants and never run a tenant's cycle twice at once."""

from __future__ import annotations

import itertools
import signal
import time
from collections import defaultdict

from sqlalchemy import select
from sqlmodel import Session

from licsync import db
from licsync.db.models import SyncCycle
from tests.daemon.conftest import spawn, stop, wait_for

TENANTS = ["t1", "t2", "t3", "t4"]


def run_two(pg_schema_url: str, *extra: str) -> list[SyncCycle]:
    """Two stub daemons for ~5 s after both ran a cycle; the finished cycles they recorded."""
    engine = db.get_engine(pg_schema_url)
    db.upgrade(engine)
    args = ["-m", "tests.daemon.stub_daemon", "--url", pg_schema_url, "--tenants", ",".join(TENANTS),
            "--interval", "1s", "--cycle-seconds", "0.4", *extra]
    procs = [spawn(*args), spawn(*args)]
    try:
        def cycles() -> list[SyncCycle]:
            with Session(engine) as s:
                return list(s.exec(select(SyncCycle).where(SyncCycle.status == "ok")).scalars())  # type: ignore[call-overload]

        wait_for("both daemons to run cycles", lambda: len({c.summary["pid"] for c in cycles()}) == 2, timeout=60,
                 proc=procs[0])
        time.sleep(4)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)  # both at once: each finishes its running cycle
        results = [stop(p, sig=0) for p in procs]
    assert [code for code, _ in results] == [0, 0], results

    rows = cycles()
    with Session(engine) as s:
        running = list(s.exec(select(SyncCycle).where(SyncCycle.status == "running")).scalars())  # type: ignore[call-overload]
    assert not running, "a cycle was left running although both daemons waited for theirs"
    engine.dispose()
    return rows


def overlaps(rows: list[SyncCycle]) -> list[str]:
    by_tenant: dict[str, list[SyncCycle]] = defaultdict(list)
    for c in rows:
        by_tenant[c.tenant].append(c)
    assert set(by_tenant) == set(TENANTS)
    found = []
    for tenant, cs in by_tenant.items():
        cs.sort(key=lambda c: c.started_at)
        found += [f"{tenant}: cycle {a.id} (pid {a.summary['pid']}) overlaps {b.id} (pid {b.summary['pid']})"
                  for a, b in itertools.pairwise(cs) if a.finished_at > b.started_at]
    return found


def test_two_daemons_never_overlap_on_a_tenant(pg_schema_url: str) -> None:
    rows = run_two(pg_schema_url)
    assert len(rows) >= 2 * len(TENANTS)
    assert overlaps(rows) == []


def test_without_the_lock_they_would_overlap(pg_schema_url: str) -> None:
    """The control: the same daemons with a lock that always says yes do overlap, so the test above
    would catch a broken lock."""
    assert overlaps(run_two(pg_schema_url, "--no-lock"))
