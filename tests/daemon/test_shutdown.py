"""``licsync run`` against the Graph emulator: SIGTERM mid-cycle never leaves a half-applied round,
the API stays responsive while a cycle runs, and ``licsync health`` tells the truth.

The emulator's page 3 fails with 503 until the test clears it, which holds the daemon's first
cycle in the middle of its delta round (pages 1–2 applied in the open transaction, retrying page 3).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from licsync import db
from licsync.db import session_scope
from licsync.db.models import Catalog, Course, DirectoryUser, Enrollment, Heartbeat, LearnerListEntry, Seat, SyncCycle
from licsync.graph.emulator import Directory, EmulatorServer
from tests.conftest import write_config
from tests.daemon.conftest import cli, free_port, spawn, stop, wait_for

USERS = 600  # three pages of 200


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    directory = Directory()
    directory.add_users(USERS, seed=7)
    with EmulatorServer(directory, workdir=tmp_path / "emu") as srv:
        port = free_port()
        url = f"sqlite:///{tmp_path}/licsync.db"
        config = write_config(tmp_path / "licsync.toml", {
            "database": {"url": url},
            "api": {"listen": f"127.0.0.1:{port}"},
            "schedule": {"sync_interval": "1h", "full_resync_interval": "24h"},
            "tenant": [srv.tenant_config("contoso", max_retries=12, timeout="10s")],
        })
        engine = db.get_engine(url)
        db.upgrade(engine)
        now = datetime.now(UTC)
        with session_scope(engine) as s:  # everyone enrolled in one course: every user would take a seat
            s.add(Catalog(tenant="contoso", id="cat", name="All"))
            s.add(Course(tenant="contoso", id="c1", catalog_id="cat", title="Course"))
            for u in directory.active_users():
                s.add(Enrollment(tenant="contoso", course_id="c1", user_id=u["id"], role="learner", enrolled_at=now))
                s.add(LearnerListEntry(tenant="contoso", catalog_id="cat", user_id=u["id"], added_at=now))
        srv.emulator.fail_page(3, 503)
        yield {"srv": srv, "config": config, "engine": engine, "base": f"http://127.0.0.1:{port}"}
        engine.dispose()


def count(engine: Any, model: Any) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model)).one()[0])  # type: ignore[call-overload]


def cycle_rows(engine: Any) -> list[SyncCycle]:
    with Session(engine) as s:
        return list(s.exec(select(SyncCycle).order_by(SyncCycle.id)).scalars())  # type: ignore[call-overload]


def start_daemon(world: dict[str, Any], shutdown_timeout: float) -> Any:
    proc = spawn("-m", "licsync", "--config", str(world["config"]), "run", "--shutdown-timeout",
                 str(shutdown_timeout))
    wait_for("the first cycle to start", lambda: any(c.status == "running" for c in cycle_rows(world["engine"])),
             timeout=60, proc=proc)
    time.sleep(2.0)  # pages 1-2 applied in the open transaction; page 3 being retried
    return proc


def test_sigterm_abandons_the_cycle_and_nothing_is_half_applied(world: dict[str, Any]) -> None:
    engine, base = world["engine"], world["base"]
    proc = start_daemon(world, shutdown_timeout=0.5)
    try:
        # The cycle blocks in its worker thread; the API on the loop still answers, fast.
        t0 = time.monotonic()
        r = httpx.get(f"{base}/healthz", timeout=5)
        assert r.status_code == 200 and r.json()["scheduler"]["heartbeat_age_s"] < 45
        assert time.monotonic() - t0 < 1.0
        assert cli(world["config"], "health").returncode == 0
        assert count(engine, DirectoryUser) == 0  # nothing visible outside the open transaction
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert (count(engine, DirectoryUser), count(engine, Seat)) == (0, 0)
    assert [c.status for c in cycle_rows(engine)] == ["running"]  # abandoned with its process
    health = cli(world["config"], "health")  # SQLite: the row may remain (the writer lock was the cycle's)
    assert health.returncode == 1 and ("no heartbeat" in health.stderr or "process is gone" in health.stderr)


def test_the_next_cycle_resumes_after_an_abandoned_one(world: dict[str, Any]) -> None:
    engine = world["engine"]
    code, err = stop(start_daemon(world, shutdown_timeout=0.5))
    assert code == 0, err
    world["srv"].emulator.fail_page(3, 0)
    r = cli(world["config"], "sync", "--tenant", "contoso", timeout=120)
    assert r.returncode == 0, r.stderr
    assert count(engine, DirectoryUser) == USERS and count(engine, Seat) == USERS
    assert [c.status for c in cycle_rows(engine)] == ["abandoned", "ok"]


def test_sigterm_lets_a_running_cycle_finish(world: dict[str, Any]) -> None:
    engine = world["engine"]
    proc = start_daemon(world, shutdown_timeout=60)
    try:
        proc.send_signal(15)
        time.sleep(0.5)
        assert proc.poll() is None  # waiting for its cycle
        world["srv"].emulator.fail_page(3, 0)  # the next retry of page 3 succeeds
    finally:
        code, err = stop(proc, sig=0, timeout=90)
    assert code == 0, err
    assert [c.status for c in cycle_rows(engine)] == ["ok"]
    assert count(engine, DirectoryUser) == USERS and count(engine, Seat) == USERS


def test_health_exit_codes(world: dict[str, Any]) -> None:
    import socket

    config, engine = world["config"], world["engine"]
    r = cli(config, "health")
    assert r.returncode == 1 and "no heartbeat" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    host = socket.gethostname()[:100]
    with session_scope(engine) as s:
        s.add(Heartbeat(instance=f"{host}:1", beat_at=datetime.now(UTC) - timedelta(minutes=5)))
        s.add(Heartbeat(instance="elsewhere:2", beat_at=datetime.now(UTC)))
    r = cli(config, "health")
    assert r.returncode == 1 and "old" in r.stderr
    assert cli(config, "health", "--any-host").returncode == 0  # elsewhere:2 is fresh
    with session_scope(engine) as s:
        s.add(Heartbeat(instance=f"{host}:{dead_pid()}", beat_at=datetime.now(UTC)))
    r = cli(config, "health")
    assert r.returncode == 1 and "old" in r.stderr  # a fresh row of a dead process does not count
    with session_scope(engine) as s:
        s.add(Heartbeat(instance=f"{host}:{os.getpid()}", beat_at=datetime.now(UTC)))
    r = cli(config, "health")
    assert r.returncode == 0 and r.stdout.startswith("ok")


def dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(p.stdout)


def test_health_fails_when_the_database_is_gone(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", {"database": {"url": "postgresql+psycopg://nobody@127.0.0.1:1/x"}})
    r = cli(config, "health")
    assert r.returncode == 1 and "database" in r.stderr.lower()
