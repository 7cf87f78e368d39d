"""Microsoft Graph ``sendMail`` as a mail transport, with the per-mailbox rate limit Exchange imposes.

Errors follow ``licsync.notify.transports``: throttling and Graph outages (after GraphClient's own
retries) and answers about the app or the sender mailbox (401, 403, 404) make the transport
unavailable — fix or wait, nothing fails; any other 4xx fails that message.

Graph carries one body per message: the HTML one is sent when there is one. The stable
Message-ID goes in ``internetMessageId`` and, for systems that rewrite it, in the
``X-Licsync-Message-Id`` header.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from licsync.errors import ConfigError, PermanentError, TransientError
from licsync.graph.client import GraphClient
from licsync.notify.transports import Mail, Outcome, TransportUnavailable

if TYPE_CHECKING:
    from licsync.config import TenantConfig

Sleep = Callable[[float], Awaitable[Any]]


class RateLimiter:
    """At most ``rate`` sends in any ``window`` seconds: a token bucket whose tokens come back
    exactly one window after they were spent.

    A classic bucket (capacity ``rate``, refilled continuously) would allow nearly ``2 × rate`` in
    some 60-second windows, and Exchange counts about 30 messages a minute per mailbox; this form
    never exceeds the limit. ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(self, rate: int, window: float = 60.0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1")
        self.rate, self.window = rate, window
        self._clock, self._sleep = clock, sleep
        self._spent: deque[float] = deque()
        self.waited = 0.0

    async def acquire(self) -> float:
        """Take a token, sleeping until one is back if needed; returns the seconds waited."""
        waited = 0.0
        while True:
            now = self._clock()
            while self._spent and self._spent[0] <= now - self.window:
                self._spent.popleft()
            if len(self._spent) < self.rate:
                self._spent.append(now)
                self.waited += waited
                return waited
            delay = self._spent[0] + self.window - now
            waited += delay
            await self._sleep(delay)


def graph_message(mail: Mail) -> dict[str, Any]:
    """The Graph ``message`` resource. Graph carries one body, so HTML wins when there is one."""
    return {
        "subject": mail.subject,
        "body": {"contentType": "HTML", "content": mail.html} if mail.html
        else {"contentType": "Text", "content": mail.text},
        "toRecipients": [{"emailAddress": {"address": mail.recipient}}],
        "internetMessageId": mail.message_id,
        "internetMessageHeaders": [
            {"name": "X-Licsync-Event", "value": mail.event},
            {"name": "X-Licsync-Message-Id", "value": mail.message_id},
        ],
    }


# Which PermanentErrors are about *this message*: Graph's answer to the sendMail request itself,
# other than 401/403/404 (the app's permission or the sender mailbox). Token and TLS errors are
# about the app. GraphClient's errors carry no status attribute, so it is read from their text,
# which licsync.graph.status writes in one place ("Graph sendMail: HTTP 400: ...").
_SENDMAIL_STATUS = re.compile(r"^Graph sendMail: (?:HTTP (\d{3})|expected HTTP 202)")
_CONFIG_STATUSES = frozenset({"401", "403", "404"})


def _about_this_message(exc: PermanentError) -> bool:
    m = _SENDMAIL_STATUS.match(str(exc))
    return m is not None and m.group(1) not in _CONFIG_STATUSES


class GraphTransport:
    """``POST /users/{sender}/sendMail`` through :class:`GraphClient`, at most ``rate_per_minute``
    messages per sender mailbox and minute. With a ``budget`` (:class:`licsync.notify.budget.MailBudget`,
    what the daemon and the CLI use) the limits are counted in the database, for all replicas
    together; without one, per process."""

    name = "graph"

    def __init__(
        self,
        tenant: TenantConfig,
        *,
        rate_per_minute: int = 30,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        budget: Any = None,
    ) -> None:
        self.tenant, self.budget = tenant, budget
        self._rate, self._clock, self._sleep = rate_per_minute, clock, sleep
        self._client = client
        self._own_client = client is None
        self._limiters: dict[str, RateLimiter] = {}

    def limiter(self, sender: str) -> RateLimiter:
        key = sender.casefold()
        if key not in self._limiters:
            self._limiters[key] = RateLimiter(self._rate, clock=self._clock, sleep=self._sleep)
        return self._limiters[key]

    async def send(self, mail: Mail) -> Outcome:
        if self.budget is not None:
            await self.budget.acquire(mail.sender, 1)  # one recipient per message
        else:
            await self.limiter(mail.sender).acquire()
        if self._client is None:

            self._client = GraphClient(self.tenant)
        try:
            await self._client.send_mail(mail.sender, graph_message(mail))
        except TransientError as exc:
            # Throttled or Graph unavailable after the client's own retries: the next message
            # from this mailbox would meet the same answer.
            raise TransportUnavailable(str(exc), retry_after=exc.retry_after) from None
        except ConfigError as exc:
            raise TransportUnavailable(str(exc)) from None
        except PermanentError as exc:
            if not _about_this_message(exc):
                raise TransportUnavailable(f"{exc} (sender {mail.sender})") from None
            raise
        return "sent"

    async def close(self) -> None:
        client = self._client
        if client is not None and self._own_client:
            self._client = None
            await client.aclose()
