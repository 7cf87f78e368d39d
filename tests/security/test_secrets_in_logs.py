"""No secret ever reaches a log or any output: a sync, a sync with a wrong client secret, mail with an
SMTP password (right and wrong), API calls and a dashboard login with tokens (valid, forged,
revoked), and the CLI in a subprocess at ``--log-level debug`` — while every sink is captured:
licsync's structlog output at debug, every stdlib log record, the process's stdout/stderr, the
subprocesses' output, and the error columns the database keeps (cycle errors, outbox errors, audit).
The scan looks for the client secrets, the SMTP passwords, the API tokens (and their secret part)
and every Graph access token the emulator issued.
"""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from licsync import db, log, tokens
from licsync.config import Settings, TenantConfig
from licsync.db import session_scope
from licsync.errors import LicsyncError
from licsync.notify import events
from licsync.notify.factory import build_transport
from licsync.notify.outbox import drain
from licsync.sync import run_cycle
from tests.conftest import write_config
from tests.daemon.conftest import REPO, env
from tests.faults.world import ADMINS, NOW, enroll
from tests.graph.conftest import GraphEnv
from tests.notify.conftest import SmtpServer

SMTP_PASSWORD = "smtp-Pa55word-never-logged"
WRONG_SECRET = "emu~wrong-secret-never-logged-0123456789"
TABLE_TEXT = {"sync_cycle": "error", "sync_state": "last_error", "outbox": "last_error", "audit_log": "detail"}


@pytest.fixture
def smtp_with_auth() -> Iterator[SmtpServer]:
    def check(_server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password == SMTP_PASSWORD.encode()
        return AuthResult(success=ok, handled=False)

    srv = SmtpServer(authenticator=check, auth_require_tls=False)  # AUTH offered on loopback, as licsync allows
    srv.start()
    yield srv
    srv.stop()


def _settings(graph_env: GraphEnv, url: str, port: int, secret_env: str) -> Settings:
    tenant = graph_env.server.tenant_config("contoso", tenant=graph_env.tenant, admins=ADMINS, max_retries=0)
    tenant["client_secret"] = f"env:{secret_env}"
    return Settings.model_validate({
        "database": {"url": url}, "tenant": [tenant],
        "notifications": {"transport": "smtp", "sender": "licsync@contoso.example", "smtp_host": "127.0.0.1",
                          "smtp_port": port, "smtp_user": "licsync", "smtp_password": "env:LEAK_SMTP_PW"},
    })


def test_no_secret_reaches_a_log_or_any_output(graph_env: GraphEnv, smtp_with_auth: SmtpServer, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    t = graph_env.tenant
    monkeypatch.setenv("LEAK_GOOD_SECRET", t.client_secret)
    monkeypatch.setenv("LEAK_WRONG_SECRET", WRONG_SECRET)
    monkeypatch.setenv("LEAK_SMTP_PW", SMTP_PASSWORD)
    url = f"sqlite:///{tmp_path}/leak.db"
    engine = db.get_engine(url)
    db.upgrade(engine)
    enroll(engine, t.directory.add_users(30, seed=4))
    good = _settings(graph_env, url, smtp_with_auth.port, "LEAK_GOOD_SECRET")
    wrong = _settings(graph_env, url, smtp_with_auth.port, "LEAK_WRONG_SECRET")
    structlog_out = io.StringIO()
    log.configure("debug", json=True, stream=structlog_out)
    caplog.set_level(logging.DEBUG)
    try:
        outputs = [_exercise(good, wrong, engine, t, tmp_path, monkeypatch)]
    finally:
        log.configure("warning")
    raw_tokens = outputs[0].pop("tokens")
    graph_tokens = list(graph_env.server.app.registry)  # every access token the emulator issued
    assert graph_tokens, "no Graph token was issued: the scan would prove nothing about them"
    captured = capfd.readouterr()
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]  # not the test's own SMTP server
    outputs += [structlog_out.getvalue(), "\n".join(r.getMessage() for r in ours), repr([r.__dict__ for r in ours]),
                captured.out, captured.err, _database_text(engine)]
    text = "\n".join(str(o) for o in outputs)
    assert "cycle_failed" in text and "invalid_client" in text and "refused the login" in text  # it all ran
    secrets = {"client secret": t.client_secret, "wrong client secret": WRONG_SECRET,
               "SMTP password": SMTP_PASSWORD, "wrong SMTP password": "wrong-" + SMTP_PASSWORD}
    secrets |= {f"API token {i}": tok for i, tok in enumerate(raw_tokens)}
    secrets |= {f"API token secret {i}": tok.split("_", 2)[2] for i, tok in enumerate(raw_tokens)}
    secrets |= {f"Graph access token {i}": tok for i, tok in enumerate(graph_tokens)}
    leaked = [name for name, value in secrets.items() if value and value in text]
    assert leaked == [], f"secrets in the output: {leaked}"


def _exercise(good: Settings, wrong: Settings, engine: Any, t: Any, tmp: Path,
              monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # A sync, then a sync whose client secret the token endpoint refuses.
    out["sync"] = asyncio.run(run_cycle(good, good.tenant[0], engine, now=NOW)).line()
    try:
        asyncio.run(run_cycle(wrong, wrong.tenant[0], engine, now=NOW))
        raise AssertionError("the wrong secret was accepted")
    except LicsyncError as exc:
        out["sync_error"] = str(exc)
    # Mail with the SMTP password, then with a wrong one.
    with session_scope(engine) as s:
        events.send_test(s, good, "contoso", NOW)
    out["drain"] = asyncio.run(drain(engine, good, build_transport(good), NOW)).line()
    monkeypatch.setenv("LEAK_SMTP_PW", "wrong-" + SMTP_PASSWORD)
    with session_scope(engine) as s:
        events.send_test(s, good, "contoso", NOW.replace(minute=5))
    out["drain_wrong"] = asyncio.run(drain(engine, good, build_transport(good), NOW.replace(minute=5))).line()
    monkeypatch.setenv("LEAK_SMTP_PW", SMTP_PASSWORD)
    # The API and the dashboard with tokens: valid, forged, revoked, in a header, a cookie, a query.
    with session_scope(engine) as s:
        raw = [tokens.create_token(s, "contoso", role, cats, NOW) for role, cats in
               (("tenant-admin", []), ("catalog-admin", ["cat"]), ("platform", []))]
        revoked = tokens.create_token(s, "contoso", "tenant-admin", [], NOW)
        tokens.revoke(s, str(tokens.token_id_of(revoked)), NOW)
    out["api"] = _api_calls(good, engine, [*raw, revoked])
    # The CLI in subprocesses, at debug: a refused secret, and token creation (stdout is the token, by design).
    config = write_config(tmp / "licsync.toml", {
        "database": {"url": str(engine.url)},
        "tenant": [{k: str(getattr(wrong.tenant[0], k)) for k in ("name", "tenant_id", "client_id", "client_secret",
                                                                  "authority", "graph_url", "ca_bundle")}]})
    cmd = [sys.executable, "-m", "licsync", "--log-level", "debug", "--config", str(config)]
    env_ = env() | {"LEAK_WRONG_SECRET": WRONG_SECRET}
    r = subprocess.run([*cmd, "sync", "--tenant", "contoso"], capture_output=True, text=True, env=env_, cwd=REPO,
                       timeout=120)
    assert r.returncode != 0 and "invalid_client" in r.stderr
    out["cli_sync"] = r.stdout + r.stderr
    r = subprocess.run([*cmd, "token", "create", "--tenant", "contoso", "--role", "platform"], capture_output=True,
                       text=True, env=env_, cwd=REPO, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().startswith(tokens.PREFIX)
    raw.append(r.stdout.strip())
    out["cli_token_stderr"] = r.stderr
    out["tokens"] = [*raw, revoked]
    return out


def _api_calls(settings: Settings, engine: Any, raw: list[str]) -> str:
    from licsync.api import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    seen = []
    with TestClient(create_app(settings, engine, clock=lambda: NOW)) as client:
        for tok in raw:
            for path in ("/api/v1/tenants/contoso/status", "/api/v1/tenants/contoso/access/x",
                         "/api/v1/tenants/contoso/export/holders.csv", "/ui/tenants/contoso", "/metrics"):
                for auth in (f"Bearer {tok}", f"Bearer {tok[:21]}{'Z' * 43}", f"Basic {tok}"):
                    r = client.get(path, headers={"Authorization": auth})
                    seen.append(f"{r.status_code} {r.headers} {r.text}")
            csrf = client.get("/ui/login").cookies.get("licsync_csrf") or client.cookies.get("licsync_csrf")
            r = client.post("/ui/login", content=f"token={tok}&csrf={csrf}", follow_redirects=False,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
            seen.append(f"{r.status_code} {r.headers.get('location')}")
            code = client.app.state.ctx.login_codes.issue(tok)  # type: ignore[attr-defined]
            r = client.get(f"/ui/login?code={code}", follow_redirects=False)  # the one-time sign-in link
            seen.append(f"{r.status_code} {r.headers.get('location')} {r.text}")
            client.cookies.clear()
    body = "\n".join(seen)
    for tok in raw:  # a response may carry the cookie the caller set, never the token in a body or a location
        assert tok not in body.replace(f"licsync_token={tok}", "licsync_token=…")
    return body


def _database_text(engine: Any) -> str:
    with engine.connect() as c:
        return "\n".join(repr(c.exec_driver_sql(f"SELECT {col} FROM {table}").all())  # noqa: S608
                         for table, col in TABLE_TEXT.items())


def test_tenant_config_repr_never_shows_a_resolved_secret(graph_env: GraphEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAK_GOOD_SECRET", graph_env.tenant.client_secret)
    cfg = TenantConfig(**(graph_env.server.tenant_config("contoso", tenant=graph_env.tenant)
                          | {"client_secret": "env:LEAK_GOOD_SECRET"}))
    assert graph_env.tenant.client_secret not in repr(cfg) + str(cfg.model_dump())
