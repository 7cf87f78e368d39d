"""One sync cycle for the faces, with its progress shown (``licsync.progress``)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from sqlalchemy.engine import Engine

from licsync.config import Settings, TenantConfig
from licsync.progress import SyncProgress
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
    """One cycle; with ``show_progress``, a progress line on a terminal, a periodic log line elsewhere."""
    reporter = SyncProgress(tenant.name) if show_progress else None
    with reporter or nullcontext():
        return await run_cycle(settings, tenant, engine, now=now, full=full, dry_run=dry_run, progress=reporter,
                               client=client)


def changes_as_rows(result: CycleResult) -> list[dict[str, str]]:
    """The cycle's seat changes with their sentences, in the words of the tenant's seat model."""
    if result.step is not None:
        return result.step.rows()
    return [{"holder": c.holder, "action": c.action, "reason": str(c.reason), "sentence": c.sentence}
            for c in result.plan.changes()]
