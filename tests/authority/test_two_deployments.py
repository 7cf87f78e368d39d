"""End to end: one activation authority over https, two deployments (two databases, two processes).

Everything runs as the vendor and two customers' admins would run it: ``licsync authority serve``
with a certificate from a test CA, ``licsync`` processes with their own configuration and SQLite
database, each syncing its own emulated Entra tenant over https. ``--now`` moves the deployments'
clocks forward; the authority keeps real time (leases are issued at the real instant ``T``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from licsync.graph.tls import client_ssl_context, make_test_pki
from licsync.subscriptions import keys
from tests.conftest import GraphEnv, write_config
from tests.daemon.conftest import REPO, env, free_port, spawn, stop, wait_for

pytestmark = pytest.mark.timeout(300)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Authority:
    """The vendor's authority as a separate process; ``start``/``stop`` keep its database."""

    def __init__(self, tmp: Path, vendor_key: Path) -> None:
        self.pki = make_test_pki(tmp / "authority-pki")
        self.db = f"sqlite:///{tmp}/authority.db"
        self.key, self.port = vendor_key, free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self.ssl = client_ssl_context(self.pki.ca_cert)

    def start(self) -> None:
        self.proc = spawn("-m", "licsync", "authority", "serve", "--database", self.db, "--listen",
                          f"127.0.0.1:{self.port}", "--private-key", str(self.key), "--tls-cert",
                          str(self.pki.server_cert), "--tls-key", str(self.pki.server_key))
        wait_for("the authority", self._healthy, timeout=60, proc=self.proc)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", verify=self.ssl, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = 15) -> None:
        if self.proc is not None:
            stop(self.proc, sig)
            self.proc = None

    def cli(self, *args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "licsync", "authority", *args, "--database", self.db],
                           capture_output=True, text=True, timeout=60, env=env(), cwd=REPO)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def activations(self) -> list[dict[str, Any]]:
        return json.loads(self.cli("list", "--json"))


class Deployment:
    """One customer deployment: its configuration file and SQLite database, run as `licsync` processes."""

    def __init__(self, tmp: Path, name: str, graph: GraphEnv, tenant: Any, public: str, authority: Authority | None):
        self.dir = tmp / name
        self.dir.mkdir()
        self.db = f"sqlite:///{self.dir}/licsync.db"
        self.config = self.dir / "licsync.toml"
        self.graph, self.public, self.authority = graph, public, authority
        self.point_at(tenant)

    def point_at(self, tenant: Any) -> None:
        data: dict[str, Any] = {
            "database": {"url": self.db},
            "vendor": {"public_key": self.public},
            "tenant": [self.graph.server.tenant_config("school", tenant=tenant, admins=["it@school.example"])],
            "seats": {"mass_free_fraction": 1.0},
        }
        if self.authority is not None:
            data["authority"] = {"url": self.authority.url, "ca_bundle": str(self.authority.pki.ca_cert)}
        write_config(self.config, data)

    def run(self, *args: str, now: datetime | None = None, code: int = 0) -> str:
        argv = ["--config", str(self.config)] + (["--now", _iso(now)] if now else []) + list(args)
        r = subprocess.run([sys.executable, "-m", "licsync", *argv], capture_output=True, text=True, timeout=120,
                           env=env(), cwd=REPO)
        assert r.returncode == code, f"licsync {' '.join(args)} exited {r.returncode}: {r.stderr}"
        return r.stdout if code == 0 else r.stderr

    def status(self, now: datetime) -> dict[str, Any]:
        return json.loads(self.run("status", "--tenant", "school", "--json", now=now))

    def explain(self, user: str, now: datetime) -> dict[str, Any]:
        return json.loads(self.run("explain", "--tenant", "school", user, "--json", now=now))

    def outbox(self, event: str) -> list[str]:
        engine = create_engine(self.db)
        try:
            with engine.connect() as c:
                return [r[0] for r in c.execute(text("select recipient from outbox where event = :e"), {"e": event})]
        finally:
            engine.dispose()


@pytest.fixture
def world(graph_env: GraphEnv, tmp_path: Path) -> dict[str, Any]:
    private, public = keys.generate_keypair()
    vendor_key = tmp_path / "vendor.key"
    vendor_key.write_bytes(private)
    authority = Authority(tmp_path, vendor_key)
    authority.start()
    tenant_a = graph_env.tenant
    tenant_b = graph_env.server.add_tenant()
    deployments = {}
    for name, tenant in (("one", tenant_a), ("two", tenant_b)):
        ids = tenant.directory.add_users(3, seed=7)
        d = Deployment(tmp_path, name, graph_env, tenant, public, authority)
        csv = d.dir / "enrollments.csv"
        csv.write_text("catalog_id,catalog_name,course_id,course_title,course_status,user_id,user_principal_name,"
                       "role,enrolled_at,expires_at\n" + "".join(
                           f"c1,Safety,k1,Basics,published,{u},u{i}@x,learner,2026-01-01T00:00:00Z,\n"
                           for i, u in enumerate(ids)), encoding="utf-8")
        d.run("db", "upgrade")
        d.run("import", "enrollments", "--tenant", "school", str(csv))
        deployments[name] = (d, ids)
    t0 = datetime.now(UTC).replace(microsecond=0)
    key = subprocess.run([sys.executable, "-m", "licsync", "subscription", "issue", "--private-key", str(vendor_key),
                          "--id", "SUB-1", "--customer", "School", "--seats", "10", "--starts", "2026-01-01",
                          "--ends", "2030-12-31"], capture_output=True, text=True, env=env(), cwd=REPO,
                         check=True).stdout.strip()
    authority.cli("import-key", key)
    yield {"authority": authority, "key": key, "t0": t0, "a": tenant_a, "b": tenant_b, **deployments}
    authority.stop()


def test_second_activation_moves_the_subscription_and_the_first_deactivates_on_renewal(world: dict[str, Any]) -> None:
    auth, key, t0 = world["authority"], world["key"], world["t0"]
    (one, ids_one), (two, ids_two) = world["one"], world["two"]
    assert "is now active on school" in one.run("activate", "--tenant", "school", key, now=t0 + timedelta(minutes=1))
    one.run("sync", "--tenant", "school", now=t0 + timedelta(minutes=2))
    st = one.status(t0 + timedelta(minutes=3))
    assert st["subscription"]["state"] == "active" and st["consumed"] == 3
    expires = datetime.fromisoformat(st["subscription"]["lease_expires_at"])
    assert timedelta(days=6, hours=23) < expires - t0 < timedelta(days=7, hours=1)
    assert st["subscription"]["tenant_id"] == world["a"].tenant_id.lower()
    assert one.explain(ids_one[0], t0 + timedelta(minutes=3))["licensed"] is True

    # The customer activates the same key in a second deployment, on another tenant: it moves there.
    assert "active on school" in two.run("activate", "--tenant", "school", key, now=t0 + timedelta(minutes=5))
    rows = auth.activations()
    assert [(r["tenant_id"], r["state"]) for r in rows] == [(world["a"].tenant_id.lower(), "moved"),
                                                            (world["b"].tenant_id.lower(), "active")]
    assert set(rows[0]) == {"subscription_id", "tenant_id", "deployment_id", "activated_at", "renewed_at",
                            "lease_expires_at", "state"}
    assert rows[0]["deployment_id"] != rows[1]["deployment_id"]

    # Before half-life the first deployment still relies on its lease (nothing asked, nothing changed) …
    one.run("sync", "--tenant", "school", now=t0 + timedelta(days=1))
    assert one.status(t0 + timedelta(days=1))["subscription"]["state"] == "active"
    # … its next renewal is refused "moved": it deactivates, audits and queues the admins' mail.
    one.run("sync", "--tenant", "school", now=t0 + timedelta(days=4))
    st = one.status(t0 + timedelta(days=4, minutes=1))
    assert st["subscription"]["state"] == "deactivated"
    assert st["subscription"]["lease_problem"].startswith("moved")
    assert st["purchased"] == 0
    decision = one.explain(ids_one[0], t0 + timedelta(days=4, minutes=1))
    assert (decision["licensed"], decision["reason"]) == (False, "no_subscription")
    assert one.outbox("subscription_moved") == ["it@school.example"]
    # The second deployment is untouched and licenses its learners.
    two.run("sync", "--tenant", "school", now=t0 + timedelta(days=4))
    assert two.status(t0 + timedelta(days=4, minutes=1))["subscription"]["state"] == "active"
    assert two.explain(ids_two[0], t0 + timedelta(days=4, minutes=1))["licensed"] is True


def test_authority_away_lease_expiry_grace_then_enforcement_and_restarts_lose_nothing(world: dict[str, Any]) -> None:
    auth, key, t0 = world["authority"], world["key"], world["t0"]
    one, ids = world["one"]
    one.run("activate", "--tenant", "school", key, now=t0 + timedelta(minutes=1))
    one.run("sync", "--tenant", "school", now=t0 + timedelta(minutes=2))
    first = one.status(t0 + timedelta(minutes=3))["subscription"]["lease_expires_at"]

    # A renewal whose answer never reached the deployment (the authority committed, then died):
    lease = create_engine(one.db).connect().execute(text("select lease from subscription_lease")).scalar()
    assert httpx.post(f"{auth.url}/v1/renew", json={"lease": lease}, verify=auth.ssl).status_code == 200
    auth.stop(sig=9)
    # The authority is away at half-life: the sync still succeeds and the lease keeps licensing.
    one.run("sync", "--tenant", "school", now=t0 + timedelta(days=4))
    st = one.status(t0 + timedelta(days=4, minutes=1))
    assert st["subscription"]["lease_expires_at"] == first and st["grace"]["state"] == "none"
    # Restarted on the same database: the deployment renews with the lease it holds; nothing was lost.
    auth.start()
    one.run("sync", "--tenant", "school", now=t0 + timedelta(days=4, hours=2))
    renewed = one.status(t0 + timedelta(days=4, hours=2))["subscription"]["lease_expires_at"]
    assert renewed > first
    rows = auth.activations()
    assert len(rows) == 1 and rows[0]["state"] == "active" and rows[0]["lease_expires_at"] == renewed

    # The authority goes away for good: the lease holds to its expiry (+ the skew bound), then grace …
    auth.stop()
    expiry = datetime.fromisoformat(renewed)
    one.run("sync", "--tenant", "school", now=expiry - timedelta(hours=1))
    assert one.status(expiry - timedelta(minutes=30))["grace"]["state"] == "none"
    one.run("sync", "--tenant", "school", now=expiry + timedelta(hours=1))
    grace = one.status(expiry + timedelta(hours=1))["grace"]
    assert (grace["state"], grace["reason"]) == ("active", "lease_expired")
    assert datetime.fromisoformat(grace["started_at"]) == expiry + timedelta(minutes=10)  # the skew bound
    decision = one.explain(ids[0], expiry + timedelta(hours=1))
    assert (decision["licensed"], decision["reason"]) == (True, "grace_period")
    assert one.outbox("grace_started") == ["it@school.example"]
    # … then enforcement: nobody is licensed, and every view says why.
    later = expiry + timedelta(days=15)
    one.run("sync", "--tenant", "school", now=later)
    st = one.status(later)
    assert (st["grace"]["state"], st["grace"]["reason"]) == ("enforced", "lease_expired")
    decision = one.explain(ids[0], later)
    assert (decision["licensed"], decision["reason"]) == (False, "lease_expired")


def test_a_lease_for_tenant_a_is_refused_while_syncing_tenant_b(world: dict[str, Any]) -> None:
    key, t0 = world["key"], world["t0"]
    one, ids = world["one"]
    one.run("activate", "--tenant", "school", key, now=t0 + timedelta(minutes=1))
    one.run("sync", "--tenant", "school", now=t0 + timedelta(minutes=2))
    # The deployment is re-pointed at tenant B (configuration and app registration): its lease is A's.
    one.point_at(world["b"])
    err = one.run("sync", "--tenant", "school", now=t0 + timedelta(minutes=3), code=78)
    line = err.strip().splitlines()[-1]  # the one-line error (after the cycle's structured log line)
    assert line.startswith("licsync: error:") and "wrong_tenant" in line and world["a"].tenant_id.lower() in line
    st = one.status(t0 + timedelta(minutes=4))
    assert st["subscription"]["state"] == "deactivated" and st["subscription"]["lease_problem"].startswith("wrong")
    assert one.explain(ids[0], t0 + timedelta(minutes=4))["licensed"] is False
