"""The notification outbox: a message is written with the change that caused it, and sent later.

Why an outbox: an email sent from inside the sync transaction is lost if the transaction rolls
back after the send, or sent for a change that never happened; a send after the commit is lost if
the process dies in between. Here ``enqueue`` writes the message rows in the caller's session, so
they commit or vanish with the change, and ``drain`` sends them afterwards.

Guarantee (also in docs/notifications/GUARANTEES.md):

* **Nothing is lost.** A row is deleted never; it is ``pending`` until a transport accepted it
  (``sent``), said it never will (``failed``, with the reason), or mail is off (``skipped``).
* **Nothing is enqueued twice.** Each row has an idempotency key — event, tenant, what it is
  about and the event's own date (grace start, threshold, day) and the recipient — and an insert
  that meets an existing key is skipped (``INSERT … ON CONFLICT DO NOTHING``), so re-running a
  cycle, a retry of the same transaction or a second replica never queues a duplicate.
* **At most one message per crashed drain may be delivered twice.** ``drain`` claims one row at a
  time: it marks it ``sending`` with a lease and commits *before* sending, then marks it ``sent``
  in a second commit. A crash between the server accepting the message and that second commit
  leaves the row ``sending``; once the lease has passed, the next drain sends it again. The same
  holds for an answer lost on the wire (SMTP connection cut after DATA, Graph 5xx/timeout after the
  request arrived). Both copies carry the same ``Message-ID`` (derived from the idempotency key),
  so receiving systems can deduplicate. No other message is sent twice: every other row is either
  not claimed yet or already marked.
* **Two replicas never send the same row**: the claim is a compare-and-set on (status, attempts),
  and on PostgreSQL the row is read ``FOR UPDATE SKIP LOCKED`` so replicas pass each other by.
  The lease (``LEASE``) must exceed the longest single send (timeouts, rate-limit wait, Graph
  retries); only a row whose lease ran out is taken over.

Retries: a message-level temporary error backs off exponentially (1, 2, 4 … minutes, capped at
6 h, or the server's Retry-After) and the row becomes ``failed`` after ``max_attempts``; a
permanent error fails it at once; an unavailable transport (server down, credentials refused,
throttled) stops the drain and leaves every message queued — an outage is never a failure.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col
from sqlmodel import select as sm_select

from licsync import metrics
from licsync.config import Settings
from licsync.db.models import OutboxMessage
from licsync.errors import InputError, NotFound, PermanentError, truncate
from licsync.log import get_logger
from licsync.notify.transports import Mail, Transport, TransportUnavailable

_O = OutboxMessage.__table__  # type: ignore[attr-defined]

KEY_MAX = 512
SUBJECT_MAX = 500
LEASE = timedelta(minutes=15)
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=6)
UNAVAILABLE_CAP = timedelta(minutes=30)  # after an outage, resume within half an hour
STATUSES = ("pending", "sending", "sent", "failed", "skipped")


# --------------------------------------------------------------------------- keys and addresses


def unique_addresses(addresses: Iterable[str]) -> list[str]:
    """Addresses without blanks and duplicates (case-insensitive), first spelling kept, in order."""
    seen: set[str] = set()
    out: list[str] = []
    for a in addresses:
        a = a.strip()
        if a and a.casefold() not in seen:
            seen.add(a.casefold())
            out.append(a)
    return out


def idempotency_key(event: str, tenant: str | None, key_parts: Sequence[object], recipient: str) -> str:
    """``event|tenant|part…|recipient`` (recipient lower-cased); hashed when longer than the column."""
    parts = [event, tenant or "-", *(str(p) for p in key_parts), recipient.strip().casefold()]
    key = "|".join(p.replace("|", "%7C") for p in parts)
    if len(key) > KEY_MAX:
        key = f"{event}|{tenant or '-'}|sha256:{hashlib.sha256(key.encode()).hexdigest()}"
    return key


def message_id_for(key: str, sender: str | None) -> str:
    """A stable RFC 5322 Message-ID for an idempotency key: every copy of a message carries it."""
    domain = sender.rpartition("@")[2] if sender and "@" in sender else "licsync.invalid"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}.licsync@{domain}>"


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after ``attempts`` tries: 1, 2, 4, … minutes, at most 6 h."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))


# --------------------------------------------------------------------------- enqueue


def enqueue(
    session: Session,
    *,
    event: str,
    tenant: str | None,
    recipients: Iterable[str],
    subject: str,
    text: str,
    html: str | None,
    key_parts: Sequence[object],
    now: datetime,
) -> int:
    """Queue one message per recipient in the caller's transaction; returns how many were new.

    ``key_parts`` name what the message is about and the event's own date (e.g. the
    subscription id and the grace start), so a repeated cycle produces the same keys and
    queues nothing. Never commits.
    """
    conn = session.connection()
    name = conn.dialect.name
    inserted = 0
    for recipient in unique_addresses(recipients):
        row = {
            "idempotency_key": idempotency_key(event, tenant, key_parts, recipient),
            "tenant": tenant, "event": event, "recipient": recipient,
            "subject": truncate(subject, SUBJECT_MAX), "body_text": text, "body_html": html,
            "status": "pending", "attempts": 0, "created_at": now, "next_attempt_at": now,
        }
        if name in ("sqlite", "postgresql"):
            ins: Any = (sqlite if name == "sqlite" else postgresql).insert(_O)
            stmt = ins.values(**row).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(_O.c.id)
            inserted += len(conn.execute(stmt).all())  # rowcount is -1 here on psycopg
        elif conn.execute(select(_O.c.id).where(_O.c.idempotency_key == row["idempotency_key"])).first() is None:
            conn.execute(insert(_O).values(**row))
            inserted += 1
    return inserted


# --------------------------------------------------------------------------- drain


@dataclass
class Delivery:
    """What one claim of one message came to."""

    id: int
    event: str
    recipient: str
    status: str  # sent | skipped | pending | failed
    attempts: int
    error: str | None = None


@dataclass
class DrainResult:
    sent: int = 0
    skipped: int = 0
    retrying: int = 0
    failed: int = 0
    lost_lease: int = 0  # marked by another drainer after our lease ran out (see module doc)
    stopped: str | None = None  # why the drain stopped early (transport unavailable)
    deliveries: list[Delivery] = field(default_factory=list)

    def line(self) -> str:
        text = (f"notifications: {self.sent} sent, {self.retrying} to retry, {self.failed} failed"
                f"{f', {self.skipped} skipped (transport none)' if self.skipped else ''}")
        return text + (f"; stopped: {self.stopped}" if self.stopped else "")


@dataclass(frozen=True)
class _Claim:
    id: int
    attempts: int
    mail: Mail


def _claim(engine: Engine, at: datetime, lease: timedelta, sender: str, ids: Sequence[int] | None) -> _Claim | None:
    """Take the next due row: ``sending`` with a lease, committed before anything is sent."""
    due = and_(_O.c.status.in_(("pending", "sending")),
               or_(_O.c.next_attempt_at.is_(None), _O.c.next_attempt_at <= at))
    if ids is not None:
        due = and_(due, _O.c.id.in_(list(ids)))
    for _race in range(10):
        with engine.begin() as conn:
            q = select(_O).where(due).order_by(_O.c.next_attempt_at, _O.c.id).limit(1)
            if conn.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            row = conn.execute(q).mappings().first()
            if row is None:
                return None
            mid = row["message_id"] or message_id_for(row["idempotency_key"], sender)
            attempts = row["attempts"] + 1
            done = conn.execute(
                update(_O).where(_O.c.id == row["id"], _O.c.status == row["status"],
                                 _O.c.attempts == row["attempts"])
                .values(status="sending", attempts=attempts, next_attempt_at=at + lease, message_id=mid)
            ).rowcount
            if done != 1:
                continue  # another drainer took it between our read and our write
        mail = Mail(outbox_id=row["id"], sender=sender, recipient=row["recipient"], subject=row["subject"],
                    text=row["body_text"], html=row["body_html"], message_id=mid, event=row["event"],
                    tenant=row["tenant"], idempotency_key=row["idempotency_key"])
        return _Claim(row["id"], attempts, mail)
    return None


def _settle(engine: Engine, claim: _Claim, values: dict[str, Any]) -> bool:
    """Write the outcome, only if the row is still ours (status sending, our attempt)."""
    with engine.begin() as conn:
        return conn.execute(update(_O).where(_O.c.id == claim.id, _O.c.status == "sending",
                                             _O.c.attempts == claim.attempts).values(**values)).rowcount == 1


async def drain(
    engine: Engine,
    settings: Settings,
    transport: Transport,
    now: datetime,
    *,
    limit: int = 100,
    ids: Sequence[int] | None = None,
    lease: timedelta = LEASE,
) -> DrainResult:
    """Send due messages one at a time (at most ``limit``); see the module doc for the guarantee.

    ``now`` is the cycle's instant; time spent sending is added to it, so leases and backoffs
    stay right during a long drain. ``ids`` restricts the drain to those rows (``notify test``).
    Closes the transport's connections at the end (the transport stays usable).
    """
    cfg = settings.notifications
    sender = cfg.sender or "licsync@localhost"
    result = DrainResult()
    started = time.monotonic()

    def current() -> datetime:
        return now + timedelta(seconds=time.monotonic() - started)

    try:
        for _ in range(limit):
            claim = _claim(engine, current(), lease, sender, ids)
            if claim is None:
                break
            log = get_logger(tenant=claim.mail.tenant, outbox_id=claim.id, notification=claim.mail.event)
            stop = False
            try:
                outcome = await transport.send(claim.mail)
            except TransportUnavailable as exc:
                # Not the message's fault: keep it (and the rest) queued, whatever the attempt count.
                at = current()
                error = truncate(str(exc), 500)
                wait = min(UNAVAILABLE_CAP, max(backoff(claim.attempts), timedelta(seconds=exc.retry_after or 0)))
                status, values = "pending", {"status": "pending", "next_attempt_at": at + wait, "last_error": error}
                result.stopped, stop = error, True
                metrics.OUTBOX_SEND_FAILURES.labels("unavailable").inc()
                log.warning("notification_transport_unavailable", error=error, attempts=claim.attempts)
            except Exception as exc:  # a transport bug counts as a message-level temporary error
                at = current()
                error = truncate(f"{type(exc).__name__}: {exc}", 500)
                if isinstance(exc, PermanentError) or claim.attempts >= cfg.max_attempts:
                    status, values = "failed", {"status": "failed", "next_attempt_at": None, "last_error": error}
                    log.error("notification_failed", error=error, attempts=claim.attempts)
                    metrics.OUTBOX_SEND_FAILURES.labels("permanent").inc()
                else:
                    retry_after = getattr(exc, "retry_after", None) or 0
                    wait = max(backoff(claim.attempts), timedelta(seconds=retry_after))
                    status, values = "pending", {"status": "pending", "next_attempt_at": at + wait,
                                                 "last_error": error}
                    log.warning("notification_retry", error=error, attempts=claim.attempts,
                                next_attempt_at=(at + wait).isoformat())
                    metrics.OUTBOX_SEND_FAILURES.labels("temporary").inc()
            else:
                status = outcome
                values = {"status": outcome, "sent_at": current(), "next_attempt_at": None,
                          "last_error": "not sent: notifications.transport is none" if outcome == "skipped" else None}
                log.info("notification_" + outcome, attempts=claim.attempts)
            if not _settle(engine, claim, values):
                result.lost_lease += 1
                log.warning("notification_lease_lost", note="another drainer took the row after the lease ran out")
            else:
                field_name = {"sent": "sent", "skipped": "skipped", "pending": "retrying", "failed": "failed"}[status]
                setattr(result, field_name, getattr(result, field_name) + 1)
                metrics.OUTBOX_SENDS.labels(status).inc()
            result.deliveries.append(Delivery(claim.id, claim.mail.event, claim.mail.recipient, status,
                                              claim.attempts, values.get("last_error") if status != "sent" else None))
            if stop:
                break
    finally:
        await transport.close()
    return result


# --------------------------------------------------------------------------- operators


def _row(m: OutboxMessage) -> dict[str, Any]:
    return {"id": m.id, "tenant": m.tenant, "event": m.event, "recipient": m.recipient, "subject": m.subject,
            "status": m.status, "attempts": m.attempts, "created_at": m.created_at,
            "next_attempt_at": m.next_attempt_at, "sent_at": m.sent_at, "last_error": m.last_error,
            "message_id": m.message_id}


def list_messages(session: Session, *, status: str | None = None, tenant: str | None = None,
                  limit: int = 200) -> list[dict[str, Any]]:
    """Outbox rows, newest first (no bodies)."""
    if status is not None and status not in STATUSES:
        raise InputError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
    q = sm_select(OutboxMessage)
    if status is not None:
        q = q.where(OutboxMessage.status == status)
    if tenant is not None:
        q = q.where(OutboxMessage.tenant == tenant)
    return [_row(m) for m in session.exec(q.order_by(col(OutboxMessage.id).desc()).limit(limit))]


def retry(session: Session, message_id: int, now: datetime) -> dict[str, Any]:
    """Put a failed (or skipped) message back in the queue with a fresh attempt count."""
    m = session.get(OutboxMessage, message_id)
    if m is None:
        raise NotFound(f"no notification {message_id} (see `licsync notifications list`)")
    if m.status not in ("failed", "skipped"):
        raise InputError(f"notification {message_id} is {m.status}; only failed or skipped ones can be retried")
    m.status, m.attempts, m.next_attempt_at = "pending", 0, now
    session.flush()
    return _row(m)
