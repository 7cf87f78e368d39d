"""Database faults during a cycle: PostgreSQL restarted mid-round, SQLite locked by another process,
a full disk (SQLite on a tiny tmpfs; PostgreSQL with its tablespace on one). Each cycle either
completes (equal to the reference) or fails cleanly — a TransientError saying the database is the
problem, nothing half-applied — and the next cycle succeeds.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from structlog.testing import capture_logs

from licsync import db
from licsync.errors import TransientError
from licsync.sync import CycleResult
from tests.conftest import pg_url_or_skip
from tests.faults import ledger
from tests.faults.world import SEED, SOAK, World, enroll, settings_for, state
from tests.graph.conftest import GraphEnv


def _cluster() -> list[str]:
    """``pg_ctlcluster … VERSION main restart`` for the machine's cluster (Debian's tooling), or skip."""
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not shutil.which("pg_ctlcluster") or not versions:
        pytest.skip("no local Debian PostgreSQL cluster to restart (pg_ctlcluster)")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"]


def _round(world: World) -> None:
    world.churn(random.Random(SEED + 1), 150)
    assert isinstance(world.cycle(ref=True), CycleResult)


def _assert_clean_failure(world: World, out: object, before: object, logs: list[dict[str, object]], says: str) -> None:
    assert isinstance(out, TransientError), f"{type(out).__name__}: {out}"
    assert says in str(out).lower()
    assert [e["error_type"] for e in logs if e["event"] == "cycle_failed"] == ["TransientError"]
    after = state(world.engine)
    assert after.facts == before.facts and after.delta_link == before.delta_link  # type: ignore[attr-defined]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_restarted_mid_round(world: World) -> None:
    """The server restarts while page 2 is applied: the round's transaction dies with its connection."""
    command = _cluster()
    _round(world)
    before = state(world.engine)

    def restart(pages: int, _users: int) -> None:
        if pages == 2:
            subprocess.run(command, check=True, capture_output=True, timeout=120)

    ledger.fault("PostgreSQL restart mid-round")
    with capture_logs() as logs:
        out = world.cycle(progress=restart)
    _assert_clean_failure(world, out, before, logs, "database")
    world.tick()
    again = world.cycle()
    assert isinstance(again, CycleResult), again
    assert state(world.engine).facts == state(world.ref).facts


LOCKER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
"""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("hold", [3.0, *([40.0] if SOAK else [])], ids=lambda h: f"held {h:.0f}s")
def test_sqlite_locked_by_another_process(world: World, db_url: str, hold: float) -> None:
    """Another process holds the write lock: a short hold is waited out (busy_timeout, 30 s) and the
    cycle completes; a longer one fails the cycle cleanly, saying the database is locked."""
    _round(world)
    before = state(world.engine)
    path = db_url.split(":///", 1)[1]
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, path, str(hold)], stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        ledger.fault(f"SQLite locked by another process ({hold:.0f} s)")
        t0 = time.monotonic()
        with capture_logs() as logs:
            out = world.cycle()
        waited = time.monotonic() - t0
    finally:
        locker.wait(60)
        locker.stdout.close()  # type: ignore[union-attr]
    if hold < 30:
        assert isinstance(out, CycleResult), out
        assert waited >= hold - 0.5  # it waited for the lock, it did not fail or skip
        assert state(world.engine).facts == state(world.ref).facts
        return
    _assert_clean_failure(world, out, before, logs, "locked")
    world.tick()
    assert isinstance(world.cycle(), CycleResult)
    assert state(world.engine).facts == state(world.ref).facts


@pytest.fixture
def tiny_fs() -> Iterator[Path]:
    """A 4 MB tmpfs (root only): a disk that really fills up. Outside pytest's private temporary
    directories, so the postgres user can reach it too."""
    mnt = Path(tempfile.mkdtemp(prefix="licsync-tiny-"))
    mnt.chmod(0o755)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}): the disk-full test needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        mnt.rmdir()


def _fill(mnt: Path, leave: int) -> Path:
    """Fill the file system until only ``leave`` bytes are free."""
    filler = mnt / "filler"
    free = shutil.disk_usage(mnt).free - leave
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free))
    return filler


def test_sqlite_disk_full_mid_round(graph_env: GraphEnv, tiny_fs: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tiny_fs}/licsync.db"
    w = _world_on(graph_env, url, tmp_path)
    _round(w)
    before = state(w.engine)
    filler = _fill(tiny_fs, leave=16 * 1024)
    ledger.fault("disk full (SQLite on a full tmpfs)")
    with capture_logs() as logs:
        out = w.cycle()
    _assert_clean_failure(w, out, before, logs, "full")
    filler.unlink()
    w.tick()
    assert isinstance(w.cycle(), CycleResult)
    assert state(w.engine).facts == state(w.ref).facts


def test_postgresql_tablespace_full_mid_round(graph_env: GraphEnv, tiny_fs: Path, tmp_path: Path) -> None:
    base = pg_url_or_skip()
    space = tiny_fs / "pg"
    space.mkdir()
    shutil.chown(space, "postgres", "postgres")
    name, schema = f"tiny_{os.getpid()}", f"t_tiny_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE TABLESPACE {name} LOCATION '{space}'"))
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = f"{base}?options=-csearch_path%3D{schema}%20-cdefault_tablespace%3D{name}"
        w = _world_on(graph_env, url, tmp_path)
        _round(w)
        before = state(w.engine)
        filler = _fill(tiny_fs, leave=8 * 1024)
        ledger.fault("disk full (PostgreSQL tablespace on a full tmpfs)")
        with capture_logs() as logs:
            out = w.cycle()
        _assert_clean_failure(w, out, before, logs, "space")
        filler.unlink()
        w.tick()
        assert isinstance(w.cycle(), CycleResult)
        assert state(w.engine).facts == state(w.ref).facts
    finally:
        db.dispose_all()
        with admin.connect() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            c.execute(text(f"DROP TABLESPACE {name}"))
        admin.dispose()


def _world_on(env: GraphEnv, url: str, tmp_path: Path) -> World:
    """The ``world`` fixture's set-up, on a database URL of the test's own."""
    from tests.faults.conftest import USERS

    env.tenant.page_size = 50
    ids = env.tenant.directory.add_users(USERS, seed=SEED % 1000, disabled_fraction=0.05)
    engine, ref = db.get_engine(url), db.get_engine(f"sqlite:///{tmp_path}/reference.db")
    for e in (engine, ref):
        db.upgrade(e)
        enroll(e, ids)
    w = World(env.server, env.tenant, engine, ref, settings_for(env.server, env.tenant, url),
              settings_for(env.server, env.tenant, f"sqlite:///{tmp_path}/reference.db"))
    w.both()
    w.tick()
    return w


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_first_full_sync_on_postgresql_stays_fast(graph_env: GraphEnv, engine: Engine, db_url: str) -> None:
    """Found by the crash suite: with statistics older than the round's writes, PostgreSQL planned the
    full catalog recount as nested loops, cubic in the tenant (1,200 users: 220 s; now about 1 s)."""
    graph_env.tenant.page_size = 200
    ids = graph_env.tenant.directory.add_users(1500, seed=SEED % 1000)
    enroll(engine, ids)
    settings = settings_for(graph_env.server, graph_env.tenant, db_url)
    w = World(graph_env.server, graph_env.tenant, engine, engine, settings, settings)
    t0 = time.monotonic()
    out = w.cycle()
    assert isinstance(out, CycleResult) and out.counts["created"] == 1500, out
    assert time.monotonic() - t0 < 30, f"a 1,500-user first sync took {time.monotonic() - t0:.0f} s"
