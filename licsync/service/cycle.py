"""One sync cycle for the faces, with a progress line on a terminal."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text
from sqlalchemy.engine import Engine

from licsync.config import Settings, TenantConfig
from licsync.sync import CycleResult, run_cycle


async def sync_once(
    settings: Settings,
    tenant: TenantConfig,
    engine: Engine,
    *,
    now: Any,
    full: bool = False,
    dry_run: bool = False,
    show_progress: bool = False,
    client: Any = None,
) -> CycleResult:
    """One cycle, with a progress line on a terminal (pages and users so far)."""
    progress = None
    live = None
    if show_progress and sys.stderr.isatty():
        live = Live(Text(""), console=Console(stderr=True), transient=True, refresh_per_second=8)
        live.start()

        def progress(pages: int, users: int) -> None:
            live.update(Text(f"{tenant.name}: reading Graph — {pages} pages, {users} users"))

    try:
        return await run_cycle(settings, tenant, engine, now=now, full=full, dry_run=dry_run, progress=progress,
                               client=client)
    finally:
        if live is not None:
            live.stop()


def changes_as_rows(result: CycleResult) -> list[dict[str, str]]:
    """The cycle's seat changes with their sentences, in the words of the tenant's seat model."""
    if result.step is not None:
        return result.step.rows()
    return [{"holder": c.holder, "action": c.action, "reason": str(c.reason), "sentence": c.sentence}
            for c in result.plan.changes()]
