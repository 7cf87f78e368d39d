"""The directory-read half of a sync round: Graph pages into the mirror (``DirectoryWriter``).

* A delta round (a stored deltaLink) walks ``/users/delta`` from it.
* A full round walks ``/users/delta`` from the start, or — ``full_read = "parallel"`` — reads
  ``/users`` in UPN-prefix shards side by side (``licsync.graph.fullread``) after taking a deltaLink
  "from now"; when the shards do not add up to ``/users/$count`` the marks are dropped and the round
  walks delta after all.
* Then deletedItems, and the sweep. A user the sweep would record as gone for good (not returned,
  not in deletedItems) is first confirmed with ``GET /users/{id}``: replicas lag, and a restored user
  leaves deletedItems before delta reports the restore. 404 → gone; 200 → back, applied as a user.

Everything is written through the caller's session, inside the round's transaction: a seat is
never freed on partial data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from licsync.config import TenantConfig
from licsync.directory import DirectoryWriter
from licsync.graph.fullread import first_error, read_shards
from licsync.graph.parse import UserRow
from licsync.log import get_logger

Progress = Callable[[int, int], None]  # (pages, users) so far in this round


async def read_directory(
    graph: Any,
    tenant: TenantConfig,
    writer: DirectoryWriter,
    link: str | None,
    progress: Progress | None = None,
) -> str | None:
    """Apply one round to ``writer`` and settle deletions; returns the deltaLink to store after commit."""
    log = get_logger(tenant=tenant.name, cycle_id=writer.cycle_id)
    if link is None and tenant.full_read == "parallel":
        shards = await read_shards(graph, writer.apply_page, concurrency=tenant.read_concurrency, progress=progress)
        log.info(
            "full_read_sharded",
            users=shards.read,
            expected=shards.expected,
            pages=shards.pages,
            lowest_concurrency=shards.lowest_concurrency,
        )
        if shards.complete:
            delta_link: str | None = shards.delta_link
        else:
            log.warning(
                "full_read_shards_mismatch",
                users=shards.read,
                expected=shards.expected,
                action="sequential delta walk",
            )
            writer.counts["shard_fallbacks"] += 1
            writer.reset_marks()
            delta_link = await walk_delta(graph, writer, None, progress)
    else:
        delta_link = await walk_delta(graph, writer, link, progress)
    writer.guard_empty()
    deleted_ids: list[str] = []
    async for ids in graph.deleted_user_ids():
        deleted_ids.extend(ids)
    await confirm_gone(graph, writer, deleted_ids, concurrency=tenant.read_concurrency)
    writer.finish(deleted_ids)
    return delta_link


async def walk_delta(graph: Any, writer: DirectoryWriter, link: str | None, progress: Progress | None) -> str | None:
    """Follow one delta round page by page into the writer; its deltaLink."""
    pages = 0
    delta_link = None
    async for page in graph.delta_pages(link):
        writer.apply_page(page.rows)
        pages += 1
        if progress:
            progress(pages, writer.counts["entries"])
        delta_link = page.delta_link or delta_link
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
