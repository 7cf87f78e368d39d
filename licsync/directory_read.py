"""The directory-read half of a sync round: Graph pages into the mirror (``DirectoryWriter``).

* A delta round (a stored deltaLink) walks ``/users/delta`` from it.
* A full round walks ``/users/delta`` from the start, or — ``full_read = "parallel"`` — reads
  ``/users`` in UPN-prefix shards side by side (``licsync.graph.fullread``) after taking a deltaLink
  "from now"; when the shards do not add up to ``/users/$count`` the marks are dropped and the round
  walks delta after all.
* The sharded read commits as it goes, in chunks of :data:`CHUNK_USERS` users, with where each shard
  got to (``full_read_progress``): a read that fails at 90% resumes from its last chunk. The users it
  wrote are only *marked* (``seen_cycle``); the sweep, the seat frees and the removal of the
  progress row happen in the caller's one transaction at the end, after a complete enumeration.
* Then deletedItems, and the sweep. A user the sweep would record as gone for good (not returned,
  not in deletedItems) is first confirmed with ``GET /users/{id}``: replicas lag, and a restored user
  leaves deletedItems before delta reports the restore. 404 → gone; 200 → back, applied as a user.

Everything else is written through the caller's session, inside the round's transaction: a seat
is never freed on partial data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import ExitStack, suppress
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session

from licsync.config import TenantConfig
from licsync.db.bulk import bulk_mode
from licsync.db.models import FullReadProgress, SyncState
from licsync.directory import DirectoryWriter
from licsync.graph.fullread import DONE, SHARD_PREFIXES, ShardStats, begin, first_error, read_shards
from licsync.graph.parse import UserRow
from licsync.log import get_logger

Progress = Callable[[int, int], None]  # (pages, users) so far in this round
CHUNK_USERS = 10_000  # a parallel full read commits this many users at a time
# A read interrupted longer ago than this starts over: its deltaLink "from now" would replay too
# much, and Graph's skiptokens do not live for ever.
RESUME_WITHIN = timedelta(hours=12)
WALK_AHEAD = 2  # delta pages fetched ahead of the writer
DRY_RUN_CYCLE = 0  # licsync.sync.DRY_RUN_CYCLE: a dry run commits nothing, so it reads in one go
_P = FullReadProgress.__table__  # type: ignore[attr-defined]


async def read_directory(
    graph: Any,
    tenant: TenantConfig,
    writer: DirectoryWriter,
    link: str | None,
    progress: Progress | None = None,
) -> str | None:
    """Apply one round to ``writer`` and settle deletions; returns the deltaLink to store after commit."""
    if link is None and tenant.full_read == "parallel":
        delta_link = await read_parallel(graph, tenant, writer, progress)
    else:
        delta_link = await walk_delta(graph, writer, link, progress)
    writer.guard_empty()
    deleted_ids: list[str] = []
    async for ids in graph.deleted_user_ids():
        deleted_ids.extend(ids)
    await confirm_gone(graph, writer, deleted_ids, concurrency=tenant.read_concurrency)
    writer.finish(deleted_ids)
    if link is None:  # the read is complete: its progress goes with the sweep and the seat frees, in one commit
        writer.session.execute(delete(_P).where(_P.c.tenant == tenant.name))
    return delta_link


async def read_parallel(
    graph: Any, tenant: TenantConfig, writer: DirectoryWriter, progress: Progress | None
) -> str | None:
    """The sharded read; committed chunk by chunk and resumable unless this is a dry run."""
    log = get_logger(tenant=tenant.name, cycle_id=writer.cycle_id)
    chunked = writer.cycle_id != DRY_RUN_CYCLE
    engine = writer.session.get_bind()
    resumed = _resumable(engine, tenant.name, writer.now) if chunked else None
    if resumed is not None:
        writer.mark, delta_link, expected, shards = resumed.mark, resumed.delta_link, resumed.expected, resumed.shards
        log.info("full_read_resumed", mark=writer.mark, shards_left=sum(1 for v in shards.values() if v != DONE))
    else:
        delta_link, expected = await begin(graph)
        shards = dict.fromkeys(SHARD_PREFIXES)
        if chunked:
            _save(engine, tenant.name, writer.mark, delta_link, expected, shards, writer.now)
    todo = {p: v for p, v in shards.items() if v != DONE}
    if chunked:
        stats = await _read_in_chunks(graph, tenant, writer, shards, todo, progress)
    else:

        def sink(_prefix: str, rows: Any, _next: str | None) -> None:
            writer.apply_page(rows)

        stats = await read_shards(graph, sink, todo, concurrency=tenant.read_concurrency, progress=progress)
    seen = writer.seen()
    log.info(
        "full_read_sharded",
        users=seen,
        expected=expected,
        pages=stats.pages,
        lowest_concurrency=stats.lowest_concurrency,
        restarted=stats.restarted,
    )
    if seen == expected:
        return delta_link
    log.warning("full_read_shards_mismatch", users=seen, expected=expected, action="sequential delta walk")
    writer.counts["shard_fallbacks"] += 1
    writer.reset_marks()
    return await walk_delta(graph, writer, None, progress)


async def _read_in_chunks(
    graph: Any,
    tenant: TenantConfig,
    writer: DirectoryWriter,
    shards: dict[str, str | None],
    todo: dict[str, str | None],
    progress: Progress | None,
) -> ShardStats:
    """Write the shards through a session of their own that commits every :data:`CHUNK_USERS`
    users, with where each shard got to: a failure resumes from the last commit. The users are
    marked ``seen_cycle == mark``; nothing is swept and no seat moves until the caller's commit."""
    engine = writer.session.get_bind()
    with Session(engine) as session, ExitStack() as widened:
        widened.enter_context(bulk_mode(session, pause_gc=False))
        chunk = DirectoryWriter(session, tenant.name, writer.cycle_id, writer.now, full=True, mark=writer.mark)
        pending = 0

        def commit() -> None:
            nonlocal widened
            chunk.flush()
            session.execute(update(_P).where(_P.c.tenant == tenant.name).values(shards=dict(shards)))
            widened.close()
            session.commit()
            widened = ExitStack()
            widened.enter_context(bulk_mode(session, pause_gc=False))
            chunk.conn = session.connection()

        def sink(prefix: str, rows: Any, next_link: str | None) -> None:
            nonlocal pending
            chunk.apply_page(rows)
            shards[prefix] = next_link or DONE
            pending += len(rows)
            if pending >= CHUNK_USERS:
                commit()
                pending = 0

        try:
            stats = await read_shards(graph, sink, todo, concurrency=tenant.read_concurrency, progress=progress)
            commit()
        finally:
            widened.close()
    for key, n in chunk.counts.items():
        writer.counts[key] += n
    return stats


def _resumable(engine: Any, tenant: str, now: datetime) -> FullReadProgress | None:
    """The interrupted read to resume, if any. Not after a cycle that succeeded since it began: that
    cycle's writes moved marks (``seen_cycle``) the sweep would then misread."""
    with Session(engine) as s:
        row = s.get(FullReadProgress, tenant)
        state = s.get(SyncState, tenant)
    if row is None or row.started_at is None or not row.shards or now - row.started_at > RESUME_WITHIN:
        return None
    if state is not None and state.last_success_at is not None and state.last_success_at > row.started_at:
        return None
    return row


def _save(
    engine: Any,
    tenant: str,
    mark: int,
    delta_link: str,
    expected: int,
    shards: dict[str, str | None],
    now: datetime,
) -> None:
    with Session(engine) as s:
        s.merge(
            FullReadProgress(
                tenant=tenant, mark=mark, delta_link=delta_link, expected=expected, shards=dict(shards), started_at=now
            )
        )
        s.commit()


async def walk_delta(graph: Any, writer: DirectoryWriter, link: str | None, progress: Progress | None) -> str | None:
    """Follow one delta round page by page into the writer; its deltaLink.

    The next page is requested while the writer applies this one (a bounded queue of
    :data:`WALK_AHEAD` pages between them), so a round costs about max(network, database) rather
    than their sum."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=WALK_AHEAD)

    async def fetch() -> None:
        try:
            async for page in graph.delta_pages(link):
                await queue.put(page)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the writer's side, which raises it
            await queue.put(exc)
            return
        await queue.put(None)

    fetcher = asyncio.create_task(fetch())
    pages = 0
    delta_link = None
    try:
        while (page := await queue.get()) is not None:
            if isinstance(page, BaseException):
                raise page
            writer.apply_page(page.rows)
            pages += 1
            if progress:
                progress(pages, writer.rows_read)  # counted as pages arrive (counts["seen"] only at finish)
            delta_link = page.delta_link or delta_link
    finally:
        if not fetcher.done():
            fetcher.cancel()
        with suppress(asyncio.CancelledError):
            await fetcher
    return delta_link


async def confirm_gone(graph: Any, writer: DirectoryWriter, deleted_ids: list[str], *, concurrency: int) -> None:
    """``GET /users/{id}`` for each user the sweep would record as gone for good; those Graph still
    has are applied as users (restored or seen), the rest are left to the sweep."""
    candidates = writer.purge_candidates(deleted_ids)
    if not candidates:
        return
    gate = asyncio.Semaphore(concurrency)
    back: list[UserRow] = []

    async def confirm(uid: str) -> None:
        async with gate:
            row = await graph.get_user(uid)
        if row is not None:
            back.append(row)

    try:
        async with asyncio.TaskGroup() as group:
            for uid in candidates:
                group.create_task(confirm(uid))
    except BaseExceptionGroup as group_error:
        raise first_error(group_error) from None
    writer.counts["confirmed_gone"] += len(candidates) - len(back)
    writer.counts["confirmed_back"] += len(back)
    if back:
        get_logger(tenant=writer.tenant, cycle_id=writer.cycle_id).info("directory_users_back", users=len(back))
        writer.apply_page(back)
        writer.flush()
