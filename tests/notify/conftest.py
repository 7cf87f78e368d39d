"""Notification fixtures: a real SMTP server (aiosmtpd) on a free loopback port, and settings for it."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from licsync.config import NotificationsConfig, Settings, TenantConfig

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def text(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]

    def html(self) -> str:
        part = self.message.get_body(("html",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]


@dataclass
class Collector:
    """aiosmtpd handler: keeps every accepted message; can refuse recipients by address."""

    messages: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply, e.g. "550 no such user"
    on_data: Callable[[Received], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        reply = self.refuse.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        got = Received(envelope.mail_from, list(envelope.rcpt_tos), msg)  # type: ignore[arg-type]
        with self.lock:
            self.messages.append(got)
        if self.on_data is not None:
            self.on_data(got)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address.lower() in (r.lower() for r in m.rcpt_tos)]


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(self, **controller_kwargs: Any) -> None:
        self.port = free_port()
        self.handler = Collector()
        self._kwargs = controller_kwargs
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **self._kwargs)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def make_settings(port: int = 25, *, transport: str = "smtp", db_url: str = "sqlite:///x.db",
                  tenants: list[TenantConfig] | None = None, **notify: Any) -> Settings:
    if tenants is None:
        tenants = [make_tenant()]
    n = NotificationsConfig(transport=transport, sender="licsync@contoso.example",  # type: ignore[arg-type]
                            smtp_host="127.0.0.1", smtp_port=port, **notify)
    return Settings(database={"url": db_url}, tenant=tenants, notifications=n)  # type: ignore[arg-type]


def make_tenant(name: str = "contoso", **over: Any) -> TenantConfig:
    base: dict[str, Any] = {
        "name": name, "tenant_id": f"tid-{name}", "client_id": "app", "client_secret": "env:UNUSED_SECRET",
        "admins": [f"it-admin@{name}.example", f"IT-Admin@{name}.example", f"second@{name}.example"],
        "catalog_admins": {"sales": [f"sales-lead@{name}.example"], "safety": [f"safety-lead@{name}.example"]},
    }
    return TenantConfig(**(base | over))
