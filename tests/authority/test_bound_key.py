"""Customers without an authority: a key issued with ``--tenant-id`` serves that tenant only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from licsync import db
from licsync.authority import lease as lease_mod
from licsync.errors import InputError
from licsync.subscriptions import keys, leases
from tests.conftest import GraphEnv, write_config
from tests.test_cli_e2e import Cli

NOW = "2026-12-01T12:00:00Z"


def _config(path: Path, graph_env: GraphEnv, tenant: Any, db_url: str, public: str) -> Path:
    return write_config(path, {"database": {"url": db_url}, "vendor": {"public_key": public},
                               "tenant": [graph_env.server.tenant_config("school", tenant=tenant)]})


def test_a_bound_key_activates_and_syncs_only_on_its_tenant(graph_env: GraphEnv, db_url: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    private, public = keys.generate_keypair()
    (tmp_path / "vendor.key").write_bytes(private)
    a, b = graph_env.tenant, graph_env.server.add_tenant()
    config = _config(tmp_path / "licsync.toml", graph_env, b, db_url, public)
    cli = Cli(config, capsys)
    cli("db", "upgrade")
    issue = ["subscription", "issue", "--private-key", str(tmp_path / "vendor.key"), "--id", "SUB-7", "--customer",
             "School", "--seats", "5", "--starts", "2026-01-01", "--ends", "2027-12-31"]
    assert "not an Entra tenant id" in cli(*issue, "--tenant-id", "contoso.com", now=NOW, code=65)
    key = cli(*issue, "--tenant-id", a.tenant_id.upper(), now=NOW).strip()
    assert keys.verify(key, public).bound_tenant_id == a.tenant_id.lower()
    # Configured for tenant B: the key bound to A is refused, nothing changes.
    err = cli("activate", "--tenant", "school", key, now=NOW, code=65)
    assert "bound to tenant" in err and "Nothing changed" in err
    assert cli.json("status", "--tenant", "school", now=NOW)["subscription"]["state"] == "none"
    # Configured for tenant A: it activates, syncs (the token's tid is A's) and shows the binding.
    _config(config, graph_env, a, db_url, public)
    cli("activate", "--tenant", "school", key, now=NOW)
    cli("sync", "--tenant", "school", now="2026-12-01T12:05:00Z")
    sub = cli.json("status", "--tenant", "school", now="2026-12-01T12:06:00Z")["subscription"]
    assert (sub["state"], sub["tenant_id"], sub["lease_expires_at"]) == ("active", a.tenant_id.lower(), None)
    # The same database pointed at tenant B's directory: the sync refuses, nothing is licensed.
    _config(config, graph_env, b, db_url, public)
    assert "wrong_tenant" in cli("sync", "--tenant", "school", now="2026-12-01T12:10:00Z", code=78)
    sub = cli.json("status", "--tenant", "school", now="2026-12-01T12:11:00Z")["subscription"]
    assert sub["state"] == "deactivated" and "wrong_tenant" in sub["lease_problem"]


def test_the_deployment_stores_only_a_lease_it_asked_for(engine: Any) -> None:
    """Tampered, foreign-vendor and replayed leases are refused by the adapter and change nothing."""
    private, public = keys.generate_keypair()
    other, _ = keys.generate_keypair()
    tid, now = "2c6ffc20-1773-4b95-8ef4-1ae800a26dc5", datetime(2026, 12, 1, tzinfo=UTC)
    first = lease_mod.new_lease("SUB-1", tid, "dep-1", now)
    newer = lease_mod.new_lease("SUB-1", tid, "dep-1", now + timedelta(days=4))

    def record(text: str, at: datetime) -> lease_mod.Lease:
        with db.session_scope(engine) as s:
            return leases.record_lease(s, "school", tid, text, public, at, subscription_id="SUB-1", deployment="dep-1")

    record(lease_mod.sign(private, first), now)
    record(lease_mod.sign(private, newer), now + timedelta(days=4))
    head, payload, sig = lease_mod.sign(private, newer).split(".")
    for bad, needle in ((lease_mod.sign(other, newer), "does not verify"),
                        (f"{head}.{payload[:-2]}AA.{sig}", "does not verify"),
                        (lease_mod.sign(private, first), "replayed")):
        with pytest.raises(InputError, match=needle):
            record(bad, now + timedelta(days=5))
    with Session(engine) as s:
        row = leases.binding(s, "SUB-1")
        assert row is not None and row.issued_at == newer.issued_at and row.expires_at == newer.expires_at


def test_a_key_issued_for_an_authority_is_refused_without_one(graph_env: GraphEnv, db_url: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The vendor, not the customer's configuration, decides that a key needs the authority."""
    private, public = keys.generate_keypair()
    (tmp_path / "vendor.key").write_bytes(private)
    cli = Cli(_config(tmp_path / "licsync.toml", graph_env, graph_env.tenant, db_url, public), capsys)
    cli("db", "upgrade")
    issue = ["subscription", "issue", "--private-key", str(tmp_path / "vendor.key"), "--id", "SUB-8", "--customer",
             "School", "--seats", "5", "--starts", "2026-01-01", "--ends", "2027-12-31"]
    assert "https:// URL" in cli(*issue, "--authority", "http://activation.example", now=NOW, code=65)
    key = cli(*issue, "--authority", "https://activation.vendor.example/", now=NOW).strip()
    assert keys.verify(key, public).required_authority == "https://activation.vendor.example"
    err = cli("activate", "--tenant", "school", key, now=NOW, code=65)
    assert 'set [authority] url = "https://activation.vendor.example"' in err and "Nothing changed" in err
    assert cli.json("status", "--tenant", "school", now=NOW)["subscription"]["state"] == "none"
