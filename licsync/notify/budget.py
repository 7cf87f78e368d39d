"""Exchange Online's sending limits per mailbox, shared by every replica through the database.

Exchange allows a mailbox about 30 messages a minute and 10,000 recipients a day (rolling 24 h).
A limiter in each process's memory lets N replicas send N times that; here each send first takes
a place in ``mail_send`` inside a transaction that holds the mailbox's lock (PostgreSQL: a
transaction advisory lock; SQLite: its single writer, taken by the transaction's first write), so
two replicas never both take the 30th place.

``reserve`` answers 0 (go) or the seconds until a place frees. ``acquire`` sleeps out a
minute's wait; a day's budget spent is :class:`TransportUnavailable` with its ``retry_after``, so
the drain stops and the outbox keeps the messages until then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.engine import Engine

from licsync.db import session_scope
from licsync.db.models import MailSend
from licsync.notify.transports import TransportUnavailable

PER_MINUTE = 30
RECIPIENTS_PER_DAY = 10_000
MINUTE, DAY = timedelta(minutes=1), timedelta(days=1)
MAX_SLEEP = 90.0  # longer waits are not slept out in a drain: the outbox keeps the message

_M = MailSend.__table__  # type: ignore[attr-defined]


class MailBudget:
    def __init__(self, engine: Engine, *, per_minute: int = PER_MINUTE, recipients_per_day: int = RECIPIENTS_PER_DAY,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.engine, self.per_minute, self.per_day = engine, per_minute, recipients_per_day
        self.clock, self.sleep = clock, sleep

    def reserve(self, sender: str, recipients: int = 1) -> float:
        """Take a place for ``recipients`` now, or say how many seconds until one frees."""
        key = sender.casefold()
        now = self.clock()
        with session_scope(self.engine) as s:
            conn = s.connection()
            if self.engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"licsync-mail:{key}"})
            # a write first: on SQLite it takes the writer lock for the rest of the transaction
            conn.execute(delete(_M).where(_M.c.sender == key, _M.c.sent_at <= now - DAY))
            minute = conn.execute(select(_M.c.sent_at).where(_M.c.sender == key, _M.c.sent_at > now - MINUTE)
                                  .order_by(_M.c.sent_at)).scalars().all()
            if len(minute) >= self.per_minute:
                return max(0.001, (minute[len(minute) - self.per_minute] + MINUTE - now).total_seconds())
            day = conn.execute(select(_M.c.sent_at, _M.c.recipients).where(_M.c.sender == key)
                               .order_by(_M.c.sent_at)).all()
            over = sum(n for _at, n in day) + recipients - self.per_day
            if over > 0:
                freed = 0
                for at, n in day:
                    freed += n
                    if freed >= over:
                        return max(0.001, (at + DAY - now).total_seconds())
                return DAY.total_seconds()  # more recipients than a day allows
            conn.execute(insert(_M).values(sender=key, sent_at=now, recipients=recipients))
        return 0.0

    async def acquire(self, sender: str, recipients: int = 1) -> float:
        """Wait for a place (a minute's limit); a spent day is TransportUnavailable. Returns the wait."""
        waited = 0.0
        while True:
            wait = await asyncio.to_thread(self.reserve, sender, recipients)
            if wait <= 0:
                return waited
            if wait > MAX_SLEEP:
                raise TransportUnavailable(
                    f"mailbox {sender}: Exchange's daily budget of {self.per_day} recipients is spent "
                    f"(shared by all replicas); sending resumes in {wait / 3600:.1f} h", retry_after=wait)
            waited += wait
            await self.sleep(wait)
