"""Transports against real parts: SMTP with STARTTLS/implicit TLS and auth, the Graph emulator, the rate limit."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from licsync import db
from licsync.config import SecretRef, TenantConfig
from licsync.db.models import OutboxMessage
from licsync.errors import ConfigError
from licsync.graph.emulator import Directory, EmulatorServer
from licsync.graph.tls import make_test_pki
from licsync.notify.factory import build_transport
from licsync.notify.graph_transport import GraphTransport, RateLimiter
from licsync.notify.outbox import drain, enqueue
from licsync.notify.transports import SmtpTransport
from tests.notify.conftest import NOW, SmtpServer, make_settings

PASSWORD = "s3cret-Pa55word"


def queue(engine: Engine, n: int, *, prefix: str = "user") -> None:
    with db.session_scope(engine) as s:
        enqueue(s, event="test", tenant="contoso", recipients=[f"{prefix}{i}@x.example" for i in range(n)],
                subject="hello", text="plain", html="<p>rich</p>", key_parts=("t",), now=NOW)


def rows(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as s:
        return list(s.exec(select(OutboxMessage).order_by(OutboxMessage.id)))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- rate limiter


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


@pytest.mark.parametrize(("spacing", "count", "waits"), [
    (0.0, 30, []),  # a burst of 30 passes
    (0.0, 31, [60.0]),  # the 31st waits until the first token is back
    (0.0, 61, [60.0, 60.0]),  # and the 61st waits for the 31st's
    (2.0, 100, []),  # exactly 30 a minute never waits
    (1.0, 31, [30.0]),  # 30 in 29 s, then the 31st waits until 60 s after the first
])
def test_rate_limiter_never_exceeds_the_rate_in_any_window(spacing: float, count: int, waits: list[float]) -> None:
    clock = FakeClock()
    limiter = RateLimiter(30, clock=clock, sleep=clock.sleep)
    stamps: list[float] = []

    async def run() -> None:
        for _ in range(count):
            await limiter.acquire()
            stamps.append(clock.t)
            clock.t += spacing

    asyncio.run(run())
    assert clock.slept == pytest.approx(waits)
    assert all(sum(1 for t in stamps if s <= t < s + 60) <= 30 for s in stamps)


# --------------------------------------------------------------------------- Graph


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[tuple[EmulatorServer, TenantConfig]]:
    with EmulatorServer(Directory(), workdir=tmp_path) as srv:
        srv.directory.add_user(userPrincipalName="licsync@contoso.example", mail="licsync@contoso.example")
        yield srv, TenantConfig(**srv.tenant_config("contoso", admins=["it-admin@contoso.example"],
                                                    max_retries=0))


def test_graph_transport_sends_through_sendmail(sqlite_engine: Engine,
                                                 graph: tuple[EmulatorServer, TenantConfig]) -> None:
    srv, tenant = graph
    settings = make_settings(transport="graph", tenants=[tenant])
    transport = build_transport(settings)
    assert isinstance(transport, GraphTransport)
    queue(sqlite_engine, 3)
    result = asyncio.run(drain(sqlite_engine, settings, transport, NOW))
    assert result.sent == 3
    sent = srv.emulator.outbox
    stored = {r.recipient: r for r in rows(sqlite_engine)}
    assert len(sent) == 3 and all(m["sender"] == "licsync@contoso.example" for m in sent)
    for m in sent:
        msg = m["message"]
        (to,) = msg["toRecipients"]
        row = stored[to["emailAddress"]["address"]]
        assert msg["internetMessageId"] == row.message_id and row.status == "sent"
        assert msg["subject"] == "hello" and msg["body"] == {"contentType": "HTML", "content": "<p>rich</p>"}
        assert {"name": "X-Licsync-Message-Id", "value": row.message_id} in msg["internetMessageHeaders"]


def test_graph_rate_limit_makes_the_31st_message_wait(sqlite_engine: Engine,
                                                       graph: tuple[EmulatorServer, TenantConfig]) -> None:
    srv, tenant = graph
    clock = FakeClock()
    transport = GraphTransport(tenant, rate_per_minute=30, clock=clock, sleep=clock.sleep)
    queue(sqlite_engine, 31)
    result = asyncio.run(drain(sqlite_engine, make_settings(transport="graph", tenants=[tenant]), transport, NOW))
    assert result.sent == 31 and len(srv.emulator.outbox) == 31
    assert clock.slept == [60.0]  # only the 31st waited, until the first token came back


def test_graph_errors_classified(sqlite_engine: Engine, graph: tuple[EmulatorServer, TenantConfig]) -> None:
    srv, tenant = graph
    settings = make_settings(transport="graph", tenants=[tenant])
    queue(sqlite_engine, 2)

    srv.emulator.fail_next(1, 503)  # Graph unavailable: stop, keep everything queued
    result = asyncio.run(drain(sqlite_engine, settings, GraphTransport(tenant), NOW))
    assert result.stopped is not None and "503" in result.stopped
    assert [r.status for r in rows(sqlite_engine)] == ["pending", "pending"]

    srv.emulator.fail_next(1, 400)  # this message is refused for good: failed, the next one goes
    later = NOW + timedelta(hours=1)
    result = asyncio.run(drain(sqlite_engine, settings, GraphTransport(tenant), later))
    assert (result.failed, result.sent) == (1, 1)
    failed = next(r for r in rows(sqlite_engine) if r.status == "failed")
    assert failed.last_error is not None and "HTTP 400" in failed.last_error

    # A sender mailbox that does not exist is a configuration problem: nothing fails, all wait.
    queue(sqlite_engine, 2, prefix="other")
    wrong = make_settings(transport="graph", tenants=[tenant])
    wrong = wrong.model_copy(update={"notifications": wrong.notifications.model_copy(
        update={"sender": "nobody@contoso.example"})})
    result = asyncio.run(drain(sqlite_engine, wrong, GraphTransport(tenant), later))
    assert result.stopped is not None and "404" in result.stopped and result.failed == 0
    assert sum(r.status == "pending" for r in rows(sqlite_engine)) == 2


def test_graph_wrong_client_secret_keeps_mail_queued(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                                     graph: tuple[EmulatorServer, TenantConfig]) -> None:
    srv, tenant = graph
    monkeypatch.setenv("LICSYNC_TEST_WRONG_SECRET", "not-the-secret")
    wrong = tenant.model_copy(update={"client_secret": SecretRef("env:LICSYNC_TEST_WRONG_SECRET")})
    queue(sqlite_engine, 2)
    result = asyncio.run(drain(sqlite_engine, make_settings(transport="graph", tenants=[wrong]),
                               GraphTransport(wrong), NOW))
    assert result.stopped is not None and result.failed == 0 and "not-the-secret" not in result.stopped
    assert [r.status for r in rows(sqlite_engine)] == ["pending", "pending"] and srv.emulator.outbox == []


# --------------------------------------------------------------------------- SMTP over TLS, with auth


def tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    pki = make_test_pki(tmp_path / "pki")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki.server_cert, pki.server_key)
    client = ssl.create_default_context(cafile=str(pki.ca_cert))
    return server, client


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"licsync" and auth_data.password == \
        PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[tuple[SmtpServer, ssl.SSLContext]]:
    server_ctx, client_ctx = tls_contexts(tmp_path)
    srv = SmtpServer(tls_context=server_ctx, require_starttls=True, authenticator=authenticator,
                     auth_required=True, auth_require_tls=True)
    srv.start()
    yield srv, client_ctx
    srv.stop()


def test_starttls_with_a_self_signed_ca_and_password_by_reference(
    sqlite_engine: Engine, tls_smtp: tuple[SmtpServer, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, client_ctx = tls_smtp
    monkeypatch.setenv("LICSYNC_TEST_SMTP_PW", PASSWORD)
    settings = make_settings(srv.port, smtp_tls="starttls", smtp_user="licsync",
                             smtp_password="env:LICSYNC_TEST_SMTP_PW")
    queue(sqlite_engine, 2)
    result = asyncio.run(drain(sqlite_engine, settings, build_transport(settings, ssl_context=client_ctx), NOW))
    assert result.sent == 2 and len(srv.messages) == 2


def test_wrong_password_keeps_mail_queued_and_never_records_the_password(
    sqlite_engine: Engine, tls_smtp: tuple[SmtpServer, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, client_ctx = tls_smtp
    monkeypatch.setenv("LICSYNC_TEST_SMTP_PW", "wrong-" + PASSWORD)
    settings = make_settings(srv.port, smtp_tls="starttls", smtp_user="licsync",
                             smtp_password="env:LICSYNC_TEST_SMTP_PW")
    queue(sqlite_engine, 2)
    result = asyncio.run(drain(sqlite_engine, settings, build_transport(settings, ssl_context=client_ctx), NOW))
    assert result.sent == 0 and result.stopped is not None and "refused the login" in result.stopped
    assert PASSWORD not in result.stopped
    assert all(r.status == "pending" and PASSWORD not in (r.last_error or "") for r in rows(sqlite_engine))


def test_starttls_required_but_not_offered(sqlite_engine: Engine, smtp: SmtpServer) -> None:
    queue(sqlite_engine, 1)
    transport = SmtpTransport("127.0.0.1", smtp.port, tls="starttls")
    result = asyncio.run(drain(sqlite_engine, make_settings(smtp.port), transport, NOW))
    assert result.stopped is not None and "does not offer STARTTLS" in result.stopped and smtp.messages == []


def test_implicit_tls(sqlite_engine: Engine, tmp_path: Path) -> None:
    server_ctx, client_ctx = tls_contexts(tmp_path)
    srv = SmtpServer(ssl_context=server_ctx)
    srv.start()
    try:
        queue(sqlite_engine, 1)
        transport = SmtpTransport("127.0.0.1", srv.port, tls="implicit", ssl_context=client_ctx)
        assert asyncio.run(drain(sqlite_engine, make_settings(srv.port), transport, NOW)).sent == 1
        assert len(srv.messages) == 1
        # An untrusted certificate is refused: the mail waits, it is not sent in the clear.
        queue(sqlite_engine, 1, prefix="again")
        untrusted = SmtpTransport("127.0.0.1", srv.port, tls="implicit", ssl_context=ssl.create_default_context())
        result = asyncio.run(drain(sqlite_engine, make_settings(srv.port), untrusted, NOW))
        assert result.stopped is not None and "TLS" in result.stopped and len(srv.messages) == 1
    finally:
        srv.stop()


def test_refuses_a_password_over_a_clear_connection_to_a_remote_host() -> None:
    with pytest.raises(ConfigError, match="in clear"):
        SmtpTransport("smtp.example.com", 25, tls="none", user="u", password=SecretRef("env:X"))
    with pytest.raises(ConfigError, match="without smtp_password"):
        SmtpTransport("127.0.0.1", 25, tls="none", user="u")


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize("length", [70, 76, 77, 78, 79, 90, 200])
def test_the_subject_is_never_folded_to_start_with_a_line_break(sqlite_engine: Engine, smtp: SmtpServer,
                                                                 length: int) -> None:
    """The default email policy folded a ~78-character subject right after "Subject:"."""
    subject = ("[licsync] contoso: grace period ends within 24 hours (2026-12-04 10:00 UTC) " + "x" * 200)[:length]
    subject = subject.rstrip()
    with db.session_scope(sqlite_engine) as s:
        enqueue(s, event="test", tenant="contoso", recipients=["it@x.example"], subject=subject, text="plain",
                html="<p>rich</p>", key_parts=("t",), now=NOW)
    result = asyncio.run(drain(sqlite_engine, make_settings(smtp.port), SmtpTransport("127.0.0.1", smtp.port), NOW))
    assert result.sent == 1
    assert smtp.messages[0].message["Subject"] == subject
