"""A drain SIGKILLed after the SMTP server accepted a message, before the row was marked sent.

The documented window: nothing is lost, and only that one in-flight message may arrive twice,
both copies carrying the same Message-ID. Everything else arrives exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from licsync import db
from licsync.db.models import OutboxMessage
from licsync.notify.outbox import LEASE, drain, enqueue
from licsync.notify.transports import SmtpTransport
from tests.notify.conftest import NOW, Received, SmtpServer, make_settings

ROOT = Path(__file__).resolve().parents[2]

DRAIN_SCRIPT = """
import asyncio, sys
from datetime import datetime
from licsync import db
from licsync.config import NotificationsConfig, Settings
from licsync.notify.outbox import drain
from licsync.notify.transports import SmtpTransport

url, port, now = sys.argv[1], int(sys.argv[2]), datetime.fromisoformat(sys.argv[3])
settings = Settings(notifications=NotificationsConfig(transport="smtp", sender="licsync@contoso.example",
                                                      smtp_port=port))
asyncio.run(drain(db.get_engine(url), settings, SmtpTransport("127.0.0.1", port, timeout=60), now))
"""


def test_kill_between_accept_and_mark_duplicates_only_the_in_flight_message(
    tmp_path: Path, sqlite_engine: Engine, smtp: SmtpServer
) -> None:
    recipients = [f"{c}@x.example" for c in "abcde"]
    with db.session_scope(sqlite_engine) as s:
        enqueue(s, event="test", tenant="contoso", recipients=recipients, subject="crash test", text="body",
                html=None, key_parts=("crash",), now=NOW)

    accepted, release = threading.Event(), threading.Event()

    def hold_second(_got: Received) -> None:
        # The server has stored message #2; its "250" reply is held back until the client is dead.
        if len(smtp.messages) == 2:
            accepted.set()
            release.wait(30)

    smtp.handler.on_data = hold_second
    url = str(sqlite_engine.url)
    with open(tmp_path / "drain.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", DRAIN_SCRIPT, url, str(smtp.port), NOW.isoformat()],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            assert accepted.wait(60), (tmp_path / "drain.log").read_text()
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
    smtp.handler.on_data = None

    with Session(sqlite_engine) as s:
        state = {r.recipient: (r.status, r.attempts) for r in s.exec(select(OutboxMessage))}
    assert state == {"a@x.example": ("sent", 1), "b@x.example": ("sending", 1), "c@x.example": ("pending", 0),
                     "d@x.example": ("pending", 0), "e@x.example": ("pending", 0)}

    settings = make_settings(smtp.port)
    # The next drain (before the lease ran out) sends the rest, and leaves the in-flight row alone.
    first = asyncio.run(drain(sqlite_engine, settings, SmtpTransport("127.0.0.1", smtp.port),
                              NOW + timedelta(minutes=1)))
    assert first.sent == 3
    # After the lease, the in-flight message is sent again: the at-least-once window.
    second = asyncio.run(drain(sqlite_engine, settings, SmtpTransport("127.0.0.1", smtp.port),
                               NOW + LEASE + timedelta(minutes=1)))
    assert second.sent == 1

    per_recipient = Counter(m.rcpt_tos[0] for m in smtp.messages)
    assert per_recipient == {"a@x.example": 1, "b@x.example": 2, "c@x.example": 1, "d@x.example": 1,
                             "e@x.example": 1}
    copies = smtp.handler.to("b@x.example")
    assert copies[0].message_id == copies[1].message_id  # receivers can deduplicate
    assert len({m.message_id for m in smtp.messages}) == 5
    with Session(sqlite_engine) as s:
        rows = list(s.exec(select(OutboxMessage)))
    assert all(r.status == "sent" for r in rows)
    assert {r.recipient: r.attempts for r in rows}["b@x.example"] == 2
