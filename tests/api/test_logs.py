"""What the service logs: the optional access log (never a token or a query string), JSON off a
terminal and readable lines on one."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

from licsync import db, log, tokens
from licsync.api import create_app
from licsync.config import Settings
from licsync.db import session_scope
from tests.api.seed import NOW, settings_data

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def _app(tmp_path: Path, access_log: bool) -> tuple[Any, str]:
    data = settings_data() | {"database": {"url": f"sqlite:///{tmp_path}/t.db"},
                              "api": {"access_log": access_log}}
    settings = Settings.model_validate(data)
    engine = db.get_engine(settings.database.url)
    db.upgrade(engine)
    with session_scope(engine) as s:
        token = tokens.create_token(s, "contoso", "platform", [], NOW)
    return create_app(settings, engine), token


def test_access_log_has_no_token_and_no_query(tmp_path: Path) -> None:
    app, token = _app(tmp_path, access_log=True)
    out = io.StringIO()
    log.configure("info", stream=out)
    try:
        with TestClient(app) as client:
            client.cookies.set("licsync_token", token)
            r = client.get("/api/v1/tenants/contoso/access/u-1?code=SECRET-IN-QUERY",
                           headers={"Authorization": f"Bearer {token}"})
            client.cookies.clear()
            assert r.status_code == 200
            assert client.get("/api/v1/tenants/contoso/status").status_code == 401
    finally:
        log.configure("warning")
    lines = [x for x in _lines(out) if x["event"] == "http_request"]
    assert [(x["method"], x["path"], x["status"]) for x in lines] == [
        ("GET", "/api/v1/tenants/contoso/access/u-1", 200), ("GET", "/api/v1/tenants/contoso/status", 401)]
    assert all(x["duration_ms"] >= 0 and x["level"] == "info" for x in lines)
    text = out.getvalue()
    assert token not in text and "SECRET-IN-QUERY" not in text and token.split("_", 2)[2] not in text


def test_access_log_is_off_by_default(tmp_path: Path) -> None:
    app, _token = _app(tmp_path, access_log=False)
    out = io.StringIO()
    log.configure("info", stream=out)
    try:
        with TestClient(app) as client:
            client.get("/healthz")
    finally:
        log.configure("warning")
    assert not [x for x in _lines(out) if x["event"] == "http_request"]


def test_json_off_a_terminal_readable_on_one() -> None:
    pipe, tty = io.StringIO(), _Tty()
    for stream in (pipe, tty):
        log.configure("info", stream=stream)
        log.get_logger(component="daemon").info("daemon_started", listen="0.0.0.0:8080")
    log.configure("warning")
    assert json.loads(pipe.getvalue())["listen"] == "0.0.0.0:8080"
    line = tty.getvalue()
    assert not line.startswith("{") and "daemon_started" in line and "listen=0.0.0.0:8080" in line
