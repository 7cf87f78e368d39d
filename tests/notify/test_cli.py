"""End to end through the CLI: notify test, notifications list / drain / retry, exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from licsync import db
from licsync.cli import main
from licsync.notify.outbox import enqueue
from tests.conftest import write_config
from tests.notify.conftest import SmtpServer

NOW = "2026-11-22T10:00:00Z"


@pytest.fixture
def config(tmp_path: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CONTOSO_SECRET", "x")
    path = write_config(tmp_path / "licsync.toml", {
        "database": {"url": f"sqlite:///{tmp_path}/cli.db"},
        "tenant": [{"name": "contoso", "tenant_id": "t", "client_id": "c", "client_secret": "env:CONTOSO_SECRET",
                    "admins": ["it-admin@contoso.example", "IT-ADMIN@contoso.example", "ops@contoso.example"]}],
        "notifications": {"transport": "smtp", "sender": "licsync@contoso.example", "smtp_host": "127.0.0.1",
                          "smtp_port": smtp.port},
    })
    db.upgrade(db.get_engine(f"sqlite:///{tmp_path}/cli.db"))
    return path


def run(config: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = 0
    try:
        main(["--config", str(config), "--now", NOW, *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_notify_test_sends_to_each_admin_once(config: Path, smtp: SmtpServer,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(config, "notify", "test", "--tenant", "contoso", capsys=capsys)
    assert code == 0
    assert "it-admin@contoso.example: sent" in out and "ops@contoso.example: sent" in out
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["it-admin@contoso.example", "ops@contoso.example"]
    assert "test message" in smtp.messages[0].message["Subject"]

    code, out, _ = run(config, "notifications", "list", "--json", capsys=capsys)
    listed: list[dict[str, Any]] = orjson.loads(out)
    assert code == 0 and [r["status"] for r in listed] == ["sent", "sent"]

    code, _, err = run(config, "notify", "test", "--tenant", "nobody", capsys=capsys)
    assert code == 78 and "unknown tenant 'nobody'" in err


def test_drain_list_and_retry(config: Path, smtp: SmtpServer, capsys: pytest.CaptureFixture[str],
                              tmp_path: Path) -> None:
    from datetime import UTC, datetime

    engine = db.get_engine(f"sqlite:///{tmp_path}/cli.db")
    with db.session_scope(engine) as s:
        enqueue(s, event="test", tenant="contoso", recipients=["gone@x.example", "ok@x.example"], subject="s",
                text="t", html=None, key_parts=("k",), now=datetime(2026, 11, 22, 9, tzinfo=UTC))
    smtp.handler.refuse["gone@x.example"] = "550 no such user"

    code, out, _ = run(config, "notifications", "drain", capsys=capsys)
    assert code == 1 and "1 sent" in out and "1 failed" in out
    code, out, _ = run(config, "notifications", "list", "--status", "failed", capsys=capsys)
    assert code == 0 and "gone@x.example" in out and "550" in out and "ok@x.example" not in out
    failed_id = out.split()[0]

    del smtp.handler.refuse["gone@x.example"]
    code, out, _ = run(config, "notifications", "retry", failed_id, capsys=capsys)
    assert code == 0 and "pending again" in out
    code, out, _ = run(config, "notifications", "drain", "--json", capsys=capsys)
    assert code == 0 and orjson.loads(out)["sent"] == 1
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["gone@x.example", "ok@x.example"]

    code, _, err = run(config, "notifications", "retry", failed_id, capsys=capsys)
    assert code == 65 and "only failed or skipped" in err

    smtp.stop()  # an outage: drain says "try later" (75) and keeps the mail
    with db.session_scope(engine) as s:
        enqueue(s, event="test", tenant="contoso", recipients=["later@x.example"], subject="s", text="t",
                html=None, key_parts=("k2",), now=datetime(2026, 11, 22, 9, tzinfo=UTC))
    code, out, _ = run(config, "notifications", "drain", capsys=capsys)
    assert code == 75 and "stopped" in out
    code, out, _ = run(config, "notifications", "list", "--status", "pending", capsys=capsys)
    assert "later@x.example" in out
