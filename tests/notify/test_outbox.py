"""The outbox against a real SMTP server: enqueue once, deliver once, survive outages, retry, fail."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from licsync import db, metrics
from licsync.db.models import OutboxMessage
from licsync.errors import InputError, NotFound
from licsync.notify import outbox
from licsync.notify.outbox import KEY_MAX, LEASE, backoff, drain, enqueue, idempotency_key, list_messages, retry
from licsync.notify.transports import SmtpTransport
from tests.notify.conftest import NOW, SmtpServer, make_settings


def queue(engine: Engine, recipients: list[str], *, event: str = "test", parts: tuple[Any, ...] = ("SUB-1", "d1"),
          now: Any = NOW) -> int:
    with db.session_scope(engine) as s:
        return enqueue(s, event=event, tenant="contoso", recipients=recipients, subject=f"subject {event}",
                       text="plain body", html="<p>html body</p>", key_parts=parts, now=now)


def rows(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as s:
        return list(s.exec(select(OutboxMessage).order_by(OutboxMessage.id)))  # type: ignore[arg-type]


def run_drain(engine: Engine, server: SmtpServer, now: Any = NOW, **kw: Any) -> outbox.DrainResult:
    settings = make_settings(server.port, max_attempts=kw.pop("max_attempts", 8))
    transport = SmtpTransport("127.0.0.1", server.port, timeout=5)
    return asyncio.run(drain(engine, settings, transport, now, **kw))


# --------------------------------------------------------------------------- enqueue


def test_enqueue_is_idempotent_and_case_insensitive(sqlite_engine: Engine) -> None:
    assert queue(sqlite_engine, ["a@x.example", "A@X.example", " b@x.example ", ""]) == 2
    assert queue(sqlite_engine, ["b@x.example", "a@x.example", "c@x.example"]) == 1  # only c is new
    assert queue(sqlite_engine, ["a@x.example"], parts=("SUB-1", "d2")) == 1  # another date: another event
    assert [r.recipient for r in rows(sqlite_engine)] == ["a@x.example", "b@x.example", "c@x.example", "a@x.example"]
    assert all(r.status == "pending" and r.attempts == 0 and r.next_attempt_at == NOW for r in rows(sqlite_engine))


def test_enqueue_rolls_back_with_the_callers_transaction(sqlite_engine: Engine) -> None:
    with pytest.raises(RuntimeError), db.session_scope(sqlite_engine) as s:
        enqueue(s, event="test", tenant="contoso", recipients=["a@x.example"], subject="s", text="t", html=None,
                key_parts=("p",), now=NOW)
        raise RuntimeError("the change that caused it failed")
    assert rows(sqlite_engine) == []


def test_long_keys_are_hashed_to_fit() -> None:
    key = idempotency_key("grace_started", "contoso", ("S" * 600, "2026-11-22"), "a@x.example")
    assert len(key) <= KEY_MAX and key.startswith("grace_started|contoso|sha256:")
    assert key == idempotency_key("grace_started", "contoso", ("S" * 600, "2026-11-22"), "A@X.example")


def test_enqueue_on_postgresql_too(engine: Engine) -> None:
    """ON CONFLICT DO NOTHING on both backends (this test runs on PostgreSQL when configured)."""
    assert queue(engine, ["a@x.example", "b@x.example"]) == 2
    assert queue(engine, ["a@x.example", "b@x.example"]) == 0
    assert len(rows(engine)) == 2


# --------------------------------------------------------------------------- drain


def test_drain_delivers_each_message_once_with_a_stable_message_id(engine: Engine, smtp: SmtpServer) -> None:
    sqlite_engine = engine  # SQLite, and PostgreSQL when configured
    queue(sqlite_engine, ["a@x.example", "b@x.example"])
    result = run_drain(sqlite_engine, smtp)
    assert (result.sent, result.failed, result.retrying, result.stopped) == (2, 0, 0, None)
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["a@x.example", "b@x.example"]
    stored = {r.recipient: r for r in rows(sqlite_engine)}
    for m in smtp.messages:
        row = stored[m.rcpt_tos[0]]
        assert row.status == "sent" and row.sent_at is not None and row.attempts == 1
        assert m.message_id == row.message_id == outbox.message_id_for(row.idempotency_key, "licsync@contoso.example")
        assert m.message["Auto-Submitted"] == "auto-generated"
        assert m.message["Subject"] == "subject test" and m.mail_from == "licsync@contoso.example"
        assert m.text().strip() == "plain body" and "<p>html body</p>" in m.html()
    # A second drain, and a repeated enqueue of the same events, send nothing more.
    queue(sqlite_engine, ["a@x.example", "b@x.example"])
    assert run_drain(sqlite_engine, smtp).sent == 0
    assert len(smtp.messages) == 2


def test_smtp_outage_keeps_messages_queued_and_delivers_them_after(sqlite_engine: Engine, smtp: SmtpServer) -> None:
    queue(sqlite_engine, ["a@x.example", "b@x.example", "c@x.example"])
    smtp.stop()
    result = run_drain(sqlite_engine, smtp)
    assert result.sent == 0 and result.stopped is not None and "unavailable" in result.stopped
    first, *rest = rows(sqlite_engine)
    assert first.status == "pending" and first.attempts == 1
    assert first.next_attempt_at is not None and first.next_attempt_at >= NOW + backoff(1)
    assert first.last_error is not None and "127.0.0.1" in first.last_error
    assert all(r.status == "pending" and r.attempts == 0 for r in rest)  # the drain stopped at the first

    # Still down an hour later: the next due message is tried; nothing ever fails because of an outage.
    for minutes in (60, 120, 180, 240, 300, 360, 420, 480, 540, 600):
        run_drain(sqlite_engine, smtp, now=NOW + timedelta(minutes=minutes), max_attempts=2)
    assert all(r.status == "pending" for r in rows(sqlite_engine))

    smtp.start()
    later = NOW + timedelta(hours=12)
    result = run_drain(sqlite_engine, smtp, now=later)
    assert result.sent == 3 and result.stopped is None
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["a@x.example", "b@x.example", "c@x.example"]
    assert all(r.status == "sent" for r in rows(sqlite_engine))


def _counted(name: str, **labels: str) -> float:
    """This process's /metrics counter (licsync.metrics), 0 before its first increment."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_temporary_refusal_backs_off_then_fails_after_max_attempts(sqlite_engine: Engine, smtp: SmtpServer) -> None:
    smtp.handler.refuse["busy@x.example"] = "450 mailbox busy, try later"
    queue(sqlite_engine, ["busy@x.example", "ok@x.example"])
    temporary = _counted("licsync_outbox_send_failures_total", kind="temporary")
    sent = _counted("licsync_outbox_sends_total", outcome="sent")
    now = NOW
    for attempt in (1, 2):
        result = run_drain(sqlite_engine, smtp, now=now, max_attempts=3)
        busy = rows(sqlite_engine)[0]
        assert busy.status == "pending" and busy.attempts == attempt
        assert busy.next_attempt_at is not None and busy.next_attempt_at >= now + backoff(attempt)
        assert busy.last_error is not None and "450" in busy.last_error
        # Not due before its backoff ends.
        assert run_drain(sqlite_engine, smtp, now=now + backoff(attempt) - timedelta(seconds=5)).retrying == 0
        now = busy.next_attempt_at + timedelta(seconds=1)
    assert result.stopped is None  # a message-level refusal does not stop the others
    result = run_drain(sqlite_engine, smtp, now=now, max_attempts=3)
    busy, ok = rows(sqlite_engine)
    assert (busy.status, busy.attempts, result.failed) == ("failed", 3, 1)
    assert ok.status == "sent" and [m.rcpt_tos for m in smtp.messages] == [["ok@x.example"]]
    assert _counted("licsync_outbox_send_failures_total", kind="temporary") == temporary + 2
    assert _counted("licsync_outbox_sends_total", outcome="sent") == sent + 1


def test_permanent_refusal_fails_at_once_and_retry_requeues(sqlite_engine: Engine, smtp: SmtpServer) -> None:
    smtp.handler.refuse["gone@x.example"] = "550 5.1.1 no such user"
    queue(sqlite_engine, ["gone@x.example"])
    permanent = _counted("licsync_outbox_send_failures_total", kind="permanent")
    result = run_drain(sqlite_engine, smtp)
    (row,) = rows(sqlite_engine)
    assert result.failed == 1 and row.status == "failed" and row.attempts == 1
    assert _counted("licsync_outbox_send_failures_total", kind="permanent") == permanent + 1
    assert _counted("licsync_outbox_sends_total", outcome="failed") >= 1
    assert row.last_error is not None and "550" in row.last_error and "gone@x.example" in row.last_error
    with Session(sqlite_engine) as s:
        assert [r["id"] for r in list_messages(s, status="failed")] == [row.id]
        assert list_messages(s, status="sent") == []
        with pytest.raises(InputError):
            list_messages(s, status="bogus")

    del smtp.handler.refuse["gone@x.example"]  # the admin fixed the mailbox
    later = NOW + timedelta(hours=1)
    with db.session_scope(sqlite_engine) as s:
        assert retry(s, row.id or 0, later)["status"] == "pending"
    with db.session_scope(sqlite_engine) as s, pytest.raises(InputError, match="only failed"):
        retry(s, row.id or 0, later)
    with db.session_scope(sqlite_engine) as s, pytest.raises(NotFound):
        retry(s, 999, later)
    assert run_drain(sqlite_engine, smtp, now=later).sent == 1
    assert rows(sqlite_engine)[0].status == "sent" and len(smtp.messages) == 1


def test_a_sending_row_is_retried_only_after_its_lease(sqlite_engine: Engine, smtp: SmtpServer) -> None:
    """What a crashed drain leaves behind: a `sending` row whose lease has not run out is left alone."""
    queue(sqlite_engine, ["a@x.example"])
    with db.session_scope(sqlite_engine) as s:
        row = s.exec(select(OutboxMessage)).one()
        row.status, row.attempts, row.next_attempt_at = "sending", 1, NOW + LEASE
    assert run_drain(sqlite_engine, smtp, now=NOW + LEASE - timedelta(seconds=1)).sent == 0
    assert run_drain(sqlite_engine, smtp, now=NOW + LEASE).sent == 1
    (row,) = rows(sqlite_engine)
    assert (row.status, row.attempts) == ("sent", 2) and len(smtp.messages) == 1


def test_two_concurrent_drains_never_send_the_same_row(engine: Engine, smtp: SmtpServer) -> None:
    """Compare-and-set claims (SQLite), plus FOR UPDATE SKIP LOCKED (PostgreSQL, when configured)."""
    sqlite_engine = engine
    queue(sqlite_engine, [f"user{i}@x.example" for i in range(30)])
    settings = make_settings(smtp.port)
    results: list[outbox.DrainResult] = []

    def one() -> None:  # each drainer in its own thread and event loop, like two replicas
        results.append(asyncio.run(drain(sqlite_engine, settings, SmtpTransport("127.0.0.1", smtp.port), NOW)))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 3
    assert sum(r.sent for r in results) == 30
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == sorted(f"user{i}@x.example" for i in range(30))


def test_none_transport_closes_messages_as_skipped(sqlite_engine: Engine) -> None:
    from licsync.notify.transports import NullTransport

    queue(sqlite_engine, ["a@x.example"])
    result = asyncio.run(drain(sqlite_engine, make_settings(transport="none"), NullTransport(), NOW))
    (row,) = rows(sqlite_engine)
    assert result.skipped == 1 and row.status == "skipped" and row.last_error and "transport is none" in row.last_error
    with db.session_scope(sqlite_engine) as s:
        retry(s, row.id or 0, NOW)  # an operator can still send it later on purpose
    assert rows(sqlite_engine)[0].status == "pending"
