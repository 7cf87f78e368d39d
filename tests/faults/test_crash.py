"""kill -9 at random points, on a seeded schedule: ``licsync run`` and ``licsync sync`` processes die
during start-up, token fetch, mid-round (pages applied in the open transaction), the commit, the
grace job or an outbox drain. After each kill a restart (a new daemon, or ``licsync sync``)
completes the step, and then:

* the mirror and the open seats (holder → reason) equal a reference database that ran the same
  steps cleanly in-process;
* the outbox holds exactly the reference's messages (idempotency keys), none lost, none twice; at
  the end a real SMTP server receives each one exactly once;
* the deltaLink is consistent: the step's committed rounds saw exactly the step's changes (a stale
  link would replay earlier ones, a lost round would miss them).

Short run: 4 kills per database. ``LICSYNC_SOAK=1``: 30 per database (60 in all).
"""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync import db
from licsync.db import session_scope
from licsync.db.models import Heartbeat, OutboxMessage, SyncCycle, SyncState
from licsync.graph.emulator import EmulatedTenant
from licsync.notify.outbox import drain
from licsync.notify.transports import SmtpTransport
from licsync.subscriptions import keys, registry
from licsync.subscriptions.terms import Terms
from licsync.sync import CycleResult, run_cycle
from tests.conftest import write_config
from tests.daemon.conftest import REPO, env, free_port, spawn, stop
from tests.faults import ledger
from tests.faults.world import ADMINS, SEED, SOAK, enroll, settings_for, state
from tests.graph.conftest import GraphEnv
from tests.notify.conftest import SmtpServer

KILLS = 30 if SOAK else 4
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
USERS = 250  # small and quick; the kills land in rounds widened by slow pages instead


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def activate(engine: Engine, private: bytes, public: str, seats: int) -> None:
    terms = Terms(id="SUB-CRASH", customer="Contoso", seats=seats, starts_at=datetime(2026, 1, 1, tzinfo=UTC),
                  ends_at=datetime(2027, 12, 31, tzinfo=UTC), issued_at=datetime(2025, 12, 1, tzinfo=UTC))
    with session_scope(engine) as s:
        registry.activate(s, "contoso", keys.issue(private, terms), public, T0 - timedelta(days=1))


def churn(t: EmulatedTenant, rng: random.Random, up: bool) -> None:
    """A bad day (disable, delete) or a good one (enable, restore, new people), ~40 changes."""
    d = t.directory
    for _ in range(40):
        users = d.active_users()
        if up:
            disabled = [u["id"] for u in users if not u["accountEnabled"]]
            soft = [u["id"] for u, _ in d.soft_deleted()]
            pick = rng.random()
            if pick < 0.45 and disabled:
                d.enable(rng.choice(disabled))
            elif pick < 0.8 and soft:
                d.restore(rng.choice(soft))
            elif pick < 0.9:
                d.update_user(rng.choice(users)["id"], displayName=f"Renamed {rng.random():.5f}")
            else:
                d.add_user(displayName=f"New {rng.random():.5f}")
        else:
            uid = rng.choice(users)["id"]
            getattr(d, rng.choice(["disable", "disable", "soft_delete", "hard_delete"]))(uid)


class Crasher:
    def __init__(self, env: GraphEnv, url: str, tmp: Path, rng: random.Random) -> None:
        self.env, self.url, self.rng = env, url, rng
        self.engine = db.get_engine(url)
        self.ref_url = f"sqlite:///{tmp}/reference.db"
        self.ref = db.get_engine(self.ref_url)
        self.smtp_port = free_port()  # nothing listens until the end: drains during the kills find no server
        tenant = env.server.tenant_config("contoso", tenant=env.tenant, admins=ADMINS, max_retries=2, timeout="5s")
        self.config = write_config(tmp / "licsync.toml", {
            "database": {"url": url}, "tenant": [tenant],
            "api": {"listen": f"127.0.0.1:{free_port()}"},
            "schedule": {"sync_interval": "5m", "full_resync_interval": "24h"},
            "seats": {"mass_free_threshold": 100_000, "mass_free_fraction": 1.0},
            "notifications": {"transport": "smtp", "sender": "licsync@contoso.example", "smtp_host": "127.0.0.1",
                              "smtp_port": self.smtp_port, "thresholds": [60, 70, 80, 90]},
        })
        self.ref_settings = settings_for(env.server, env.tenant, self.ref_url, smtp_port=self.smtp_port)
        self.ref_settings = self.ref_settings.model_copy(update={"notifications": self.ref_settings.notifications
                                                                 .model_copy(update={"thresholds": [60, 70, 80, 90]})})
        self.log: list[str] = []

    def argv(self, now: datetime, *args: str) -> list[str]:
        return ["-m", "licsync", "--config", str(self.config), "--now", iso(now), *args]

    def sync(self, now: datetime) -> None:
        r = subprocess.run([sys.executable, *self.argv(now, "sync", "--tenant", "contoso")], capture_output=True,
                           text=True, timeout=120, env=env(), cwd=REPO)
        assert r.returncode == 0, r.stderr

    def ref_cycle(self, now: datetime) -> CycleResult:
        async def go() -> CycleResult:
            return await run_cycle(self.ref_settings, self.ref_settings.tenant[0], self.ref, now=now)

        return asyncio.run(go())

    def last_cycle_id(self) -> int:
        with Session(self.engine) as s:
            return int(s.execute(select(SyncCycle.id).order_by(SyncCycle.id.desc()).limit(1)).scalar() or 0)  # type: ignore[call-overload, union-attr]

    def kill_one(self, now: datetime, k: int) -> None:
        """Start a daemon or a sync and SIGKILL it at a random point of its life (the schedule is seeded)."""
        target = self.rng.choice(["run", "sync"])
        anchor = self.rng.choice(["spawn", "cycle"])
        delay = self.rng.uniform(0.0, 1.6)
        for page in range(1, 5):  # slow pages widen the open transaction, so kills land inside it
            self.env.tenant.hang_page(page, seconds=0.25)
        before = self.last_cycle_id()
        proc = spawn(*self.argv(now, "run", "--no-api") if target == "run" else self.argv(now, "sync", "--tenant",
                                                                                             "contoso"))
        try:
            if anchor == "cycle":
                deadline = time.monotonic() + 30
                while self.last_cycle_id() == before and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.02)
            time.sleep(delay)
            where = self.where(before)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        self.env.tenant.clear_faults()
        ledger.KILLS[f"{target} ({where})"] += 1
        self.log.append(f"kill {k}: {target}, {anchor}+{delay:.2f}s, {where}")

    def where(self, before: int) -> str:
        with Session(self.engine) as s:
            rows = s.execute(select(SyncCycle.status).where(SyncCycle.id > before)).scalars().all()  # type: ignore[call-overload]
        return "before its cycle" if not rows else ("mid-cycle" if "running" in rows else "after its commit")

    def restart(self, now: datetime) -> None:
        """A new daemon until it has synced this step, or one ``licsync sync``."""
        if self.rng.random() < 0.5:
            self.sync(now)
            return
        proc = spawn(*self.argv(now, "run", "--no-api"))
        try:
            deadline = time.monotonic() + 60
            while not (self.synced(now) and self.up(proc.pid)):
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "the restarted daemon did not sync"
                time.sleep(0.1)
        finally:
            code, err = stop(proc)
        assert code == 0, err

    def up(self, pid: int) -> bool:
        """The daemon wrote its heartbeat: its signal handlers are in place (SIGTERM is a clean stop)."""
        with Session(self.engine) as s:
            return s.get(Heartbeat, f"{socket.gethostname()[:100]}:{pid}") is not None

    def synced(self, now: datetime) -> bool:
        with Session(self.engine) as s:
            st = s.get(SyncState, "contoso")
            running = s.execute(select(SyncCycle.id).where(SyncCycle.status == "running")).first()  # type: ignore[call-overload]
        return st is not None and st.last_success_at is not None and st.last_success_at >= now and running is None

    def rounds_since(self, cycle_id: int) -> tuple[int, int]:
        """(users seen, changes) summed over the rounds committed after ``cycle_id``."""
        with Session(self.engine) as s:
            rows = s.execute(select(SyncCycle.summary).where(SyncCycle.id > cycle_id,  # type: ignore[call-overload]
                                                             SyncCycle.status == "ok")).scalars().all()
        assert rows, "no round committed in this step"
        return sum(r["users_seen"] for r in rows), sum(r["changed"] for r in rows)


@pytest.mark.timeout(1800)
def test_kill_dash_nine_at_random_points_loses_and_duplicates_nothing(graph_env: GraphEnv, db_url: str,
                                                                      tmp_path: Path) -> None:
    rng = random.Random(f"{SEED}:{db_url.split(':')[0]}")
    t = graph_env.tenant
    t.page_size = 25
    ids = t.directory.add_users(USERS, seed=SEED % 997, disabled_fraction=0.05)
    c = Crasher(graph_env, db_url, tmp_path, rng)
    private, public = keys.generate_keypair()
    for e in (c.engine, c.ref):
        db.upgrade(e)
        enroll(e, ids)
        activate(e, private, public, seats=int(USERS * 1.1))
    c.sync(T0)
    c.ref_cycle(T0)

    for k in range(1, KILLS + 1):
        now = T0 + k * STEP
        enabled = sum(1 for u in t.directory.active_users() if u["accountEnabled"])
        churn(t, rng, up=k % 3 == 0 or enabled < USERS // 2)  # bad days, good days, never an empty tenant
        ref = c.ref_cycle(now).summary()
        mark = c.last_cycle_id()
        c.kill_one(now, k)
        c.restart(now)
        got, want = state(c.engine), state(c.ref)
        assert got.facts == want.facts, f"after kill {k}: the seats or mirror differ from a clean run\n{c.log}"
        lost, extra = set(want.outbox) - set(got.outbox), set(got.outbox) - set(want.outbox)
        ledger.LOST["outbox"] += len(lost)
        ledger.DUPLICATED["outbox"] += len(extra)
        assert not lost and not extra, f"after kill {k}: outbox lost {lost}, extra {extra}\n{c.log}"
        assert c.rounds_since(mark) == (ref["users_seen"], ref["changed"]), f"deltaLink inconsistent after kill {k}"

    want = state(c.ref)
    assert len(want.outbox) >= 2, "the scenario announced nothing: the outbox comparison would prove nothing"
    smtp = SmtpServer()
    smtp.port = c.smtp_port
    smtp.start()
    try:
        late = datetime.now(UTC) + timedelta(days=1)  # past every backoff and lease the outage left
        transport = SmtpTransport("127.0.0.1", c.smtp_port)
        while asyncio.run(drain(c.engine, c.ref_settings, transport, late, limit=500)).sent:
            pass
    finally:
        smtp.stop()
    with Session(c.engine) as s:
        rows = s.execute(select(OutboxMessage.message_id, OutboxMessage.recipient, OutboxMessage.status)).all()  # type: ignore[call-overload]
    assert {r[2] for r in rows} == {"sent"}
    delivered = Counter((m.message_id, m.rcpt_tos[0]) for m in smtp.messages)
    ledger.DUPLICATED["email"] += sum(n - 1 for n in delivered.values())
    ledger.LOST["email"] += len({(m, r) for m, r, _ in rows} - set(delivered))
    assert delivered == {(m, r): 1 for m, r, _ in rows}
