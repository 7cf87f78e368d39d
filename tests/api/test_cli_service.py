"""The CLI around the API: ``token create/list/revoke`` and ``serve`` (real process, SIGTERM → 0)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx

from licsync import db
from tests.api.seed import settings_data
from tests.conftest import write_config
from tests.daemon.conftest import cli, free_port, spawn, stop, wait_for


def _config(tmp_path: Path, port: int = 8080) -> Path:
    data = settings_data() | {"database": {"url": f"sqlite:///{tmp_path}/t.db"},
                              "api": {"listen": f"127.0.0.1:{port}"}}
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    for t in data["tenant"]:  # load_settings resolves secret references at start
        t["client_secret"] = f"file:{secret}"
    db.upgrade(db.get_engine(data["database"]["url"]))
    return write_config(tmp_path / "licsync.toml", data)


def test_token_create_prints_only_the_token(tmp_path: Path) -> None:
    config = _config(tmp_path)
    r = cli(config, "token", "create", "--tenant", "contoso", "--role", "catalog-admin", "--catalog", "cat-a",
            "--catalog", "cat-b", "--label", "Sales")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"lsy_[0-9a-f]{16}_[A-Za-z0-9_-]{43}\n", r.stdout)
    token_id = r.stdout.split("_")[1]
    listed = cli(config, "token", "list", "--json")
    assert token_id in listed.stdout and r.stdout.strip() not in listed.stdout
    assert '"cat-a"' in listed.stdout and '"cat-b"' in listed.stdout
    assert cli(config, "token", "revoke", token_id).returncode == 0
    assert token_id not in cli(config, "token", "list").stdout
    again = cli(config, "token", "revoke", token_id)
    assert again.returncode != 0 and again.stderr.count("\n") == 1


def test_token_create_refuses_bad_input(tmp_path: Path) -> None:
    config = _config(tmp_path)
    for args, why in [(["--tenant", "nowhere", "--role", "platform"], "unknown tenant"),
                      (["--tenant", "contoso", "--role", "root"], "unknown role"),
                      (["--tenant", "contoso", "--role", "catalog-admin"], "at least one --catalog"),
                      (["--tenant", "contoso", "--role", "platform", "--catalog", "x"], "catalog-admin tokens only")]:
        r = cli(config, "token", "create", *args)
        assert r.returncode != 0 and why in r.stderr and r.stdout == "", (args, r.stderr)


def test_serve_answers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = _config(tmp_path, port)
    token = cli(config, "token", "create", "--tenant", "contoso", "--role", "platform").stdout.strip()
    proc = spawn("-m", "licsync", "--config", str(config), "serve")
    try:
        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("serve to listen", up, proc=proc)
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/tenants/contoso/access/u-1",
                      headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["reason"] == "no_subscription"
        assert "server" not in r.headers  # no uvicorn banner
    finally:
        code, err = stop(proc, signal.SIGTERM)
    assert code == 0, err


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        config = _config(tmp_path, s.getsockname()[1])
        r = cli(config, "serve")
    assert r.returncode == 78 and "cannot listen" in r.stderr
