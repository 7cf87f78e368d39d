"""Writing commands: ``--now`` cannot go back in time, and queued mail is sent before exit (SPEC §3, §5)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from licsync.catalogs.csv_import import HEADER
from tests.notify.conftest import SmtpServer
from tests.seat_models.conftest import Cli, enrollment_row


@pytest.fixture
def mailing_cli(tmp_path: Path, graph_env: Any, capsys: pytest.CaptureFixture[str], smtp: SmtpServer) -> Cli:
    cli = Cli(tmp_path, graph_env, capsys, notifications={
        "transport": "smtp", "sender": "licsync@contoso.example", "smtp_host": "127.0.0.1", "smtp_port": smtp.port})
    config = tomllib.loads(cli.config.read_text())
    config["tenant"][0]["admins"] = ["it-admin@contoso.example"]
    cli.config.write_text(tomli_w.dumps(config))
    return cli


def test_a_writing_command_refuses_a_now_before_the_newest_change(cli: Cli) -> None:
    cli.directory.add_user(id="u1", displayName="U1")
    cli.activate("enrollment", 5)
    cli("sync", "--tenant", "contoso", now="2026-03-02T12:00:00Z")
    err = cli("sync", "--tenant", "contoso", now="2026-03-01T00:00:00Z", code=65)
    assert "--now 2026-03-01T00:00:00Z is earlier than the newest recorded change" in err
    cli("sync", "--tenant", "contoso", now="2026-03-02T11:58:00Z")  # within the slack of a running clock
    e = cli.file("e.csv", HEADER, [enrollment_row("u1")])
    cli("import", "enrollments", "--tenant", "contoso", e, now="2026-02-01T00:00:00Z", code=65)
    assert cli.json("status", "--tenant", "contoso", now="2026-02-01T00:00:00Z")["consumed"] == 0  # reads may
    cli("sync", "--tenant", "contoso", "--dry-run", now="2026-02-01T00:00:00Z")  # and so may a dry run
    cli("import", "enrollments", "--tenant", "contoso", e, now="2026-03-03T00:00:00Z")


def test_commands_send_the_mail_they_queue(mailing_cli: Cli, smtp: SmtpServer) -> None:
    cli = mailing_cli
    cli.directory.add_user(id="u1", displayName="U1")
    cli.directory.add_user(id="u2", displayName="U2")
    cli.activate("enrollment", 2)
    cli("sync", "--tenant", "contoso")
    e = cli.file("e.csv", HEADER, [enrollment_row("u1")])
    cli("import", "enrollments", "--tenant", "contoso", e, "--no-send")  # 1 of 2: 50 %, nothing to say
    e2 = cli.file("e2.csv", HEADER, [enrollment_row("u1"), enrollment_row("u2")])
    cli("import", "enrollments", "--tenant", "contoso", e2, "--no-send", now="2026-03-02T13:00:00Z")
    assert smtp.messages == []  # 100 %: queued, not sent
    pending = cli.json("notifications", "list", "--status", "pending", now="2026-03-02T13:00:00Z")
    assert {m["event"] for m in pending} >= {"usage_threshold"}
    cli("sync", "--tenant", "contoso", now="2026-03-02T14:00:00Z")  # sends before it exits
    assert {m.message["X-Licsync-Event"] for m in smtp.messages} >= {"usage_threshold"}
    assert cli.json("notifications", "list", "--status", "pending", now="2026-03-02T14:00:00Z") == []
