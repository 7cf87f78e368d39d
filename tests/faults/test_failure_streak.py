"""Repeated failures, as an IT admin lives them through the CLI: every failed ``licsync sync`` ends
in one clear error line and exit 75 or 1, nothing is half-applied, the third failure in a row
queues one ``sync_failing`` email per admin (not the second, not the fourth), a real SMTP server
receives it exactly once, and the first success after the streak sends ``sync_recovered``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import Session

from licsync import db
from licsync.cli import main
from licsync.config import load_settings
from licsync.db.models import OutboxMessage
from licsync.graph.emulator import EmulatedTenant
from tests.conftest import write_config
from tests.faults import ledger
from tests.faults.world import ADMINS, cycles_metric, enroll, metrics, state
from tests.graph.conftest import GraphEnv
from tests.notify.conftest import SmtpServer

# A different fault each time: the streak counts failed cycles, whatever failed them.
STREAK: list[tuple[str, Callable[[EmulatedTenant], None], int]] = [
    ("token endpoint outage", lambda t: t.token_endpoint_down(True), 75),
    ("503 storm", lambda t: t.fail_next(100, 503), 75),
    ("malformed JSON page", lambda t: t.malformed_page(1), 1),
    ("client secret expired", lambda t: t.revoke_secret(), 1),
]


def run(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        main(["--config", str(config), *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def outbox(url: str) -> Counter[tuple[str, str]]:
    with Session(db.get_engine(url)) as s:
        rows = s.execute(select(OutboxMessage.event, OutboxMessage.recipient)).all()  # type: ignore[call-overload]
    return Counter((e, r) for e, r in rows)


def test_three_failures_in_a_row_email_the_admins_once(graph_env: GraphEnv, db_url: str, tmp_path: Path,
                                                       smtp: SmtpServer, capsys: pytest.CaptureFixture[str]) -> None:
    t = graph_env.tenant
    ids = t.directory.add_users(120, seed=5)
    tenant_cfg: dict[str, Any] = graph_env.server.tenant_config("contoso", tenant=t, admins=ADMINS, max_retries=0)
    config = write_config(tmp_path / "licsync.toml", {
        "database": {"url": db_url}, "tenant": [tenant_cfg],
        "notifications": {"transport": "smtp", "sender": "licsync@contoso.example", "smtp_host": "127.0.0.1",
                          "smtp_port": smtp.port},
        "seats": {"mass_free_threshold": 10_000, "mass_free_fraction": 1.0},
    })
    assert run(config, capsys, "db", "upgrade")[0] == 0
    engine = db.get_engine(db_url)
    enroll(engine, ids)
    assert run(config, capsys, "sync", "--tenant", "contoso")[0] == 0
    t.directory.disable(ids[0])
    before = state(engine)
    settings = load_settings(config)

    for i, (name, arm, code) in enumerate(STREAK, start=1):
        arm(t)
        ledger.fault(f"CLI streak: {name}")
        rc, out, err = run(config, capsys, "sync", "--tenant", "contoso", "--json")
        t.clear_faults()
        t.add_app(t.client_id, t.client_secret)  # undo a revoked secret for the next fault
        assert rc == code, err
        assert out == ""
        errors = [line for line in err.splitlines() if line.startswith("licsync: error: ")]
        assert len(errors) == 1 and "Traceback" not in err, err
        events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert [e["event"] for e in events if e["level"] == "error"] == ["cycle_failed"]
        assert replace(state(engine), outbox=()) == replace(before, outbox=())  # nothing half-applied
        queued = outbox(db_url)
        assert set(queued) == ({("sync_failing", a) for a in ADMINS} if i >= 3 else set()), (i, queued)
        assert all(n == 1 for n in queued.values())

    assert cycles_metric(settings, engine, "failed") == len(STREAK)
    assert metrics(settings, engine)['licsync_sync_consecutive_failures{tenant="contoso"}'] == len(STREAK)
    rc, out, err = run(config, capsys, "notifications", "drain")
    assert rc == 0, err
    rc, out, err = run(config, capsys, "sync", "--tenant", "contoso", "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert [(c["holder"], c["reason"]) for c in result["changes"]] == [(ids[0], "account_disabled")]
    assert run(config, capsys, "notifications", "drain")[0] == 0

    rows = outbox(db_url)
    assert rows == {(e, a): 1 for a in ADMINS for e in ("sync_failing", "sync_recovered")}, rows
    with Session(engine) as s:
        ids_of = dict(s.execute(select(OutboxMessage.message_id, OutboxMessage.recipient)).all())  # type: ignore[call-overload]
    delivered = Counter((m.message_id, m.rcpt_tos[0]) for m in smtp.messages)
    assert delivered == {(mid, rcpt): 1 for mid, rcpt in ids_of.items()}  # each one, exactly once
    m = metrics(settings, engine)
    assert m['licsync_sync_consecutive_failures{tenant="contoso"}'] == 0
    assert m['licsync_outbox_messages{status="sent"}'] == 4
