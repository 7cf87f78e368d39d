"""The parallel full read of a large tenant: ``/users`` in UPN-prefix shards, side by side.

A users delta walk is sequential (~200 users a page, ``$top`` ignored, ``$filter`` only ``id eq``):
at 200–350 ms a page, a 1M-user tenant's first round is 17–30 minutes of waiting (SPEC §4). A full
read does not need delta, though:

1. ``GET /users/delta?$deltatoken=latest`` gives a deltaLink "from now" without enumerating;
2. ``GET /users/$count`` (``ConsistencyLevel: eventual``) says how many users there are;
3. ``GET /users?$top=999&$filter=startsWith(userPrincipalName,'x')`` for each character a UPN may
   start with, several shards at once;
4. the caller applies the pages as one mark-and-sweep, and later rounds run delta from the link
   taken in 1 (changes made during the read are replayed: applying them is an upsert).

If the shards do not add up to the count (a UPN starting with a character no shard covers, users
created or deleted during the read), the caller falls back to the sequential walk.

Concurrency adapts to Graph's ``x-ms-throttle-limit-percentage``: it halves as usage passes 80% of
the app's resource-unit budget, pauses near 100%, and grows back by one a page below 80%, so a
clean run never meets a 429. Pages go through a bounded queue to the writer, so fetching and writing
overlap and memory holds at most a few pages.
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from licsync.errors import PermanentError
from licsync.graph.parse import UserRow

# The characters a userPrincipalName can start with, in practice (startsWith is case-insensitive).
SHARD_PREFIXES: tuple[str, ...] = tuple(string.ascii_lowercase + string.digits)
SLOW_DOWN_AT = 80.0  # % of the budget: Graph starts sending the header here
PAUSE_AT = 95.0  # % of the budget: wait for the window to drain before the next request
PAUSE_SECONDS = 1.0  # a tenth of Graph's 10 s window


class AdaptiveLimit:
    """At most ``limit`` requests in flight; ``observe`` moves the limit with the throttle percentage."""

    def __init__(self, limit: int, *, sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.ceiling = self.limit = max(1, limit)
        self.inflight = 0
        self.lowest = self.limit
        self._cond = asyncio.Condition()
        self._sleep = sleep
        self._pause = 0.0

    async def __aenter__(self) -> AdaptiveLimit:
        if self._pause:
            await self._sleep(self._pause)
        async with self._cond:
            await self._cond.wait_for(lambda: self.inflight < self.limit)
            self.inflight += 1
        return self

    async def __aexit__(self, *_exc: object) -> None:
        async with self._cond:
            self.inflight -= 1
            self._cond.notify_all()

    def observe(self, percent: float) -> None:
        """After each answer: halve above 80% of the budget, pause above 95%, else grow by one."""
        if percent >= SLOW_DOWN_AT:
            self.limit = max(1, self.limit // 2)
        elif self.limit < self.ceiling:
            self.limit += 1
        self._pause = PAUSE_SECONDS if percent >= PAUSE_AT else 0.0
        self.lowest = min(self.lowest, self.limit)


DONE = "done"  # a shard read to its end, in a progress map
Sink = Callable[[str, Sequence[UserRow], str | None], None]  # (prefix, rows, nextLink or None at the end)


@dataclass
class ShardStats:
    read: int  # users the shards returned (a shard resumed from its start counts twice)
    pages: int
    lowest_concurrency: int
    restarted: int  # shards whose resume link Graph no longer accepted


async def begin(graph: Any) -> tuple[str, int]:
    """The deltaLink "from now" and the user count, in this order: what the read must add up to."""
    delta_link = await graph.latest_delta_link()
    return delta_link, await graph.user_count()


async def read_shards(
    graph: Any,
    sink: Sink,
    shards: dict[str, str | None],
    *,
    concurrency: int,
    top: int = 999,
    progress: Callable[[int, int], None] | None = None,
) -> ShardStats:
    """Read each shard (prefix → None from its start, or a nextLink to resume it from), handing every
    page to ``sink`` as it arrives, in this task. At most ``2 × concurrency`` pages wait in between."""
    limit = AdaptiveLimit(concurrency)
    queue: asyncio.Queue[tuple[str, list[UserRow], str | None] | None] = asyncio.Queue(maxsize=2 * concurrency)
    totals = {"read": 0, "pages": 0, "restarted": 0}

    async def shard(prefix: str, resume: str | None) -> None:
        pages = graph.user_pages(prefix, top=top, resume=resume).__aiter__()
        first = True
        while True:
            async with limit:
                try:
                    rows, next_link = await pages.__anext__()
                except StopAsyncIteration:
                    return
                except PermanentError:
                    if not (first and resume is not None):
                        raise
                    # A resume link Graph no longer knows (skiptokens do not live for ever): from the start.
                    totals["restarted"] += 1
                    pages, resume = graph.user_pages(prefix, top=top).__aiter__(), None
                    continue
            first = False
            limit.observe(graph.throttle_percent)
            await queue.put((prefix, rows, next_link))

    async def produce() -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for prefix, resume in shards.items():
                    group.create_task(shard(prefix, resume))
        finally:
            await queue.put(None)

    async def consume() -> None:
        while (item := await queue.get()) is not None:
            prefix, rows, next_link = item
            sink(prefix, rows, next_link)
            totals["read"] += len(rows)
            totals["pages"] += 1
            if progress:
                progress(totals["pages"], totals["read"])

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(produce())
            group.create_task(consume())
    except BaseExceptionGroup as group_error:  # callers act on licsync's own errors, not groups
        raise first_error(group_error) from None
    return ShardStats(totals["read"], totals["pages"], limit.lowest, totals["restarted"])


def first_error(error: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
