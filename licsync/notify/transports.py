"""Mail transports: SMTP (smtplib), Microsoft Graph ``sendMail``, and ``none``.

A transport sends one :class:`Mail` and says how it went, by what helps the outbox decide:

* returns ``"sent"`` (the server accepted it) or ``"skipped"`` (transport ``none``: nothing is
  sent, the row is closed as ``skipped`` so the queue does not pile up while mail is off);
* raises :class:`TransportUnavailable` when nothing can be sent right now whatever the message
  (server down, TLS or credentials refused, sender refused, Graph throttling or 5xx): the outbox
  stops the drain and keeps every message queued — an outage never turns messages into failures;
* raises ``TransientError`` when this message may go through later (an SMTP 4xx about it);
* raises ``PermanentError`` when it never will (SMTP 5xx for the recipient or the content, Graph 400).

Transports are reusable: ``close()`` releases connections, the next ``send`` opens them again, and
the Graph rate limiter keeps its memory across drains. Graph lives in ``graph_transport``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import ipaddress
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Literal, Protocol

from licsync.config import SecretRef
from licsync.errors import ConfigError, LicsyncError, PermanentError, TransientError, truncate
from licsync.graph.tls import client_ssl_context

Outcome = Literal["sent", "skipped"]


class TransportUnavailable(TransientError):
    """Nothing can be sent now, whatever the message: stop draining, keep everything queued."""


@dataclass(frozen=True)
class Mail:
    """One message as the outbox hands it to a transport (one recipient per message)."""

    outbox_id: int
    sender: str
    recipient: str
    subject: str
    text: str
    html: str | None
    message_id: str
    event: str
    tenant: str | None
    idempotency_key: str


class Transport(Protocol):
    name: str

    async def send(self, mail: Mail) -> Outcome: ...

    async def close(self) -> None: ...


def redact(text: str, *secrets: str | None) -> str:
    """Remove secret values from a text that may reach a log or the outbox row."""
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return text


# The default policy folds a header at 78 columns, and a subject of about that length is folded
# right after "Subject:", so the value starts with a line break (seen by any parser that keeps
# folding whitespace). Header lines up to RFC 5322's hard limit of 998 need no folding; the outbox
# caps a subject at 500 characters.
MIME_POLICY = email.policy.default.clone(max_line_length=998)


def build_mime(mail: Mail) -> EmailMessage:
    """The RFC 5322 message: text with an HTML alternative, a stable Message-ID, auto-reply suppression."""
    msg = EmailMessage()  # the default policy chooses the body's transfer encoding, as before
    msg["From"] = mail.sender
    msg["To"] = mail.recipient
    msg["Subject"] = mail.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = mail.message_id  # stable per idempotency key: receivers can deduplicate
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to a robot
    msg["X-Auto-Response-Suppress"] = "All"  # the same for Exchange
    msg["X-Licsync-Event"] = mail.event
    msg.set_content(mail.text)
    if mail.html:
        msg.add_alternative(mail.html, subtype="html")
    msg.policy = MIME_POLICY  # headers are folded when the message is flattened: by this policy
    return msg


# --------------------------------------------------------------------------- none


class NullTransport:
    """``transport = "none"``: nothing leaves; each message is closed as ``skipped``.

    Leaving them pending instead would grow the queue for ever and flood the admins with stale
    news the day mail is switched on; ``licsync notifications retry ID`` re-queues one on purpose.
    """

    name = "none"

    async def send(self, mail: Mail) -> Outcome:
        return "skipped"

    async def close(self) -> None:
        return None


# --------------------------------------------------------------------------- SMTP


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SmtpTransport:
    """smtplib in a worker thread; one connection reused across the messages of a drain.

    ``tls``: ``none``, ``starttls`` (refused if the server does not offer it) or ``implicit``
    (SMTPS). The password is read through its reference at connect time and never appears in an
    error. Authentication over an unencrypted connection is refused except to a loopback relay.
    """

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: str = "none",
        user: str | None = None,
        password: SecretRef | None = None,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if tls not in ("none", "starttls", "implicit"):
            raise ConfigError(f"notifications.smtp_tls: {tls!r} is not none, starttls or implicit")
        if user and tls == "none" and not _is_loopback(host):
            raise ConfigError("notifications.smtp_user is set but smtp_tls is none: the password would cross the "
                              "network in clear; set smtp_tls = \"starttls\" or \"implicit\"")
        if user and password is None:
            raise ConfigError("notifications.smtp_user is set without smtp_password (env:NAME or file:/path)")
        self.host, self.port, self.tls, self.user = host, port, tls, user
        self._password = password
        self._timeout = timeout
        self._ssl = ssl_context
        self._conn: smtplib.SMTP | None = None

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:

            self._ssl = client_ssl_context(None)  # the system store; environment variables never decide
        return self._ssl

    def _where(self) -> str:
        return f"SMTP server {self.host}:{self.port}"

    def _connect(self) -> smtplib.SMTP:
        secret = None
        try:
            if self.tls == "implicit":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self._timeout,
                                                      context=self._context())
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self._timeout)
            try:
                if self.tls == "starttls":
                    conn.ehlo()
                    if not conn.has_extn("starttls"):
                        raise TransportUnavailable(f"{self._where()} does not offer STARTTLS (smtp_tls = starttls)")
                    conn.starttls(context=self._context())
                    conn.ehlo()
                if self.user:
                    assert self._password is not None
                    secret = self._password.resolve()
                    conn.login(self.user, secret)
            except BaseException:
                conn.close()
                raise
        except TransportUnavailable:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportUnavailable(f"{self._where()} refused the login of {self.user} ({exc.smtp_code}): "
                                       "check notifications.smtp_user and smtp_password") from None
        except ssl.SSLError as exc:
            raise TransportUnavailable(f"{self._where()}: TLS failed ({truncate(redact(str(exc), secret), 200)})"
                                       ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransportUnavailable(f"{self._where()} unavailable: {_describe(exc, secret)}") from None
        return conn

    def _connection(self) -> smtplib.SMTP:
        if self._conn is not None:
            try:
                if self._conn.noop()[0] == 250:
                    return self._conn
            except (OSError, smtplib.SMTPException):
                pass
            self._drop()
        self._conn = self._connect()
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        self._conn = None

    def _send_sync(self, mail: Mail) -> Outcome:
        msg = build_mime(mail)
        conn = self._connection()
        try:
            conn.send_message(msg, from_addr=mail.sender, to_addrs=[mail.recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()), (550, b"refused"))
            raise _by_code(code, f"{self._where()} refused recipient {mail.recipient}: {code} {_text(reply)}"
                           ) from None
        except smtplib.SMTPSenderRefused as exc:
            # Every message has this sender: no use trying the others now.
            raise TransportUnavailable(f"{self._where()} refused sender {mail.sender}: {exc.smtp_code} "
                                       f"{_text(exc.smtp_error)}") from None
        except smtplib.SMTPServerDisconnected:
            self._drop()
            raise TransportUnavailable(f"{self._where()} closed the connection while sending") from None
        except smtplib.SMTPResponseException as exc:
            self._drop()
            raise _by_code(exc.smtp_code, f"{self._where()} refused the message: {exc.smtp_code} "
                           f"{_text(exc.smtp_error)}") from None
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise TransportUnavailable(f"{self._where()} failed while sending: {_describe(exc, None)}") from None
        return "sent"

    async def send(self, mail: Mail) -> Outcome:
        return await asyncio.to_thread(self._send_sync, mail)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(_quit, conn)


def _quit(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()


def _text(reply: bytes | str) -> str:
    s = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return truncate(s, 200)


def _describe(exc: BaseException, secret: str | None) -> str:
    detail = str(exc) or type(exc).__name__
    return truncate(redact(f"{type(exc).__name__}: {detail}", secret), 200)


def _by_code(code: int, message: str) -> LicsyncError:
    """SMTP reply classes: 4xx says "try again later", 5xx says "never"."""
    return TransientError(message) if 400 <= code < 500 else PermanentError(message)


# --------------------------------------------------------------------------- factory
