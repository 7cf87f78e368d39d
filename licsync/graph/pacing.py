"""Client-side pacing for Graph endpoints with a per-minute request limit (identity reports:
``signInActivity`` allows 10 requests a minute per app and tenant)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any


class MinutePacer:
    """At most ``limit`` requests in any sliding minute: ``await wait()`` before each one."""

    def __init__(self, limit: int, sleep: Callable[[float], Awaitable[Any]], stats: Any = None) -> None:
        self.limit = limit
        self._sleep = sleep
        self._stats = stats
        self._sent: deque[float] = deque()

    async def wait(self) -> None:
        sent, now = self._sent, time.monotonic()
        while sent and sent[0] <= now - 60:
            sent.popleft()
        if len(sent) >= self.limit:
            delay = sent[0] + 60 - now
            if self._stats is not None:
                self._stats.waited_seconds += delay
            await self._sleep(delay)
            sent.popleft()
        sent.append(time.monotonic())
