"""One sync cycle of one tenant: read Graph, mirror the directory, then ``licsync.reseat``.

Every delta round — full or incremental — is applied whole or not at all: the pages, the
deleted-items listing, the seat plan and the new deltaLink share one database transaction. The
exception is a parallel full read (``full_read = "parallel"``, ``licsync.directory_read``): it
commits the users it has read in chunks, so a failure near the end resumes from the last chunk —
but the sweep of the unseen, every seat change and the new deltaLink still commit together, once,
after the enumeration completed: no seat is ever freed on partial data. An expired delta token is
recovered by a full resync inside the same cycle.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

from licsync import leasing, reseat, users
from licsync.catalogs.odata import apply_pulled, fetch_snapshot
from licsync.config import Settings, TenantConfig
from licsync.db import BULK_ROWS, analyze, session_scope
from licsync.db.bulk import bulk_mode
from licsync.db.models import SyncCycle, SyncState
from licsync.directory import CHANGE_KINDS, DirectoryWriter
from licsync.directory_read import read_directory
from licsync.errors import DeltaTokenExpired, LicsyncError, TransientError, truncate
from licsync.graph.client import GraphClient, GraphStats
from licsync.log import get_logger
from licsync.seats import Plan

Progress = Callable[[int, int], None]  # (pages, users) so far in this round
DRY_RUN_CYCLE = 0  # real cycle ids start at 1


@dataclass
class CycleResult:
    tenant: str
    cycle_id: int
    kind: str  # delta | full
    resynced: bool = False  # an expired delta token forced a full resync
    dry_run: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    duration: float = 0.0
    plan: Plan = field(default_factory=Plan)
    hold_id: str | None = None
    hold_reason: str | None = None
    step: reseat.Step | None = field(default=None, repr=False)  # the seat model's plan and sentences

    def summary(self) -> dict[str, Any]:
        c = self.counts
        return {
            "tenant": self.tenant,
            "cycle_id": self.cycle_id,
            "kind": self.kind,
            "resynced": self.resynced,
            "dry_run": self.dry_run,
            "users_seen": c.get("seen", 0),
            "changed": sum(c.get(k, 0) for k in CHANGE_KINDS),
            "created": c.get("created", 0),
            "updated": c.get("updated", 0),
            "disabled": c.get("disabled", 0) + c.get("created_disabled", 0),
            "enabled": c.get("enabled", 0),
            "restored": c.get("restored", 0),
            "soft_deleted": c.get("soft_deleted", 0),
            "hard_deleted": c.get("hard_deleted", 0),
            "seats_taken": len(self.plan.takes),
            "seats_freed": len(self.plan.frees),
            "seats_refused": len(self.plan.refused),
            "consumed": self.plan.consumed_after if self.hold_id is None else self.plan.without_frees().consumed_after,
            "held": self.hold_id,
            "graph_requests": self.requests,
            "retries": self.retries,
            "duration_s": round(self.duration, 3),
        }

    def line(self) -> str:
        s = self.summary()
        refused = f" (refused {s['seats_refused']})" if s["seats_refused"] else ""
        text = (
            f"{self.tenant}: {s['kind']}{' (resync: delta token expired)' if self.resynced else ''} — "
            f"{s['users_seen']} users seen, {s['changed']} changed, {s['disabled']} disabled, "
            f"{s['soft_deleted']} soft-deleted, {s['hard_deleted']} hard-deleted; "
            f"seats +{s['seats_taken']} −{s['seats_freed']}"
            f"{refused}, {s['consumed']} consumed; "
            f"{s['graph_requests']} Graph requests, {s['retries']} retries, {s['duration_s']:.1f}s"
        )
        if self.hold_id:
            text += f"; FREES HELD for approval as {self.hold_id}: {self.hold_reason}"
        if self.dry_run:
            text += " [dry run: nothing changed]"
        return text


def database_error(exc: OperationalError) -> TransientError:
    """The database failed under a cycle (a restart, a lock held elsewhere, a full disk): retry later."""
    return TransientError(f"database error, nothing was applied: {truncate(str(exc.orig), 300)}")


def on_graph(link: str, graph_url: str) -> bool:
    """Whether a link points at the configured Graph: same scheme, host, port and version path."""
    a, b = urlsplit(link), urlsplit(graph_url)
    default = {"https": 443, "http": 80}
    try:
        ports = (a.port or default.get(a.scheme), b.port or default.get(b.scheme))
    except ValueError:  # a port that is not a number
        return False
    return (
        a.scheme == b.scheme
        and (a.hostname or "") == (b.hostname or "")
        and ports[0] == ports[1]
        and a.path.startswith(b.path.rstrip("/") + "/")
    )


def _new_cycle(engine: Engine, tenant: str, kind: str, now: datetime) -> int:
    with session_scope(engine) as s:
        # Staging of rounds that died with their process is of no use to anyone.
        stale = (
            s.exec(select(SyncCycle).where(SyncCycle.tenant == tenant, SyncCycle.status == "running"))  # type: ignore[call-overload]
            .scalars()
            .all()
        )
        for c in stale:
            c.status, c.finished_at, c.error = "abandoned", now, "the process ended before the cycle finished"
        row = SyncCycle(tenant=tenant, kind=kind, status="running", started_at=now)
        s.add(row)
        s.flush()
        assert row.id is not None
        return row.id


def _state(session: Session, tenant: str) -> SyncState:
    st = session.get(SyncState, tenant)
    if st is None:
        st = SyncState(tenant=tenant)
        session.add(st)
    return st


def _record_failure(settings: Settings, engine: Engine, tenant: str, cycle_id: int, now: datetime, error: str) -> int:
    """Record a failed cycle (and tell the admins once a failure streak is long enough)."""
    with session_scope(engine) as s:
        cyc = s.get(SyncCycle, cycle_id)
        if cyc is not None:
            cyc.status, cyc.finished_at, cyc.error = "failed", now, error
        st = _state(s, tenant)
        st.consecutive_failures += 1
        st.last_error = error
        st.last_attempt_at = now
        reseat.on_sync_failed(s, settings, tenant, failures=st.consecutive_failures, error=error, now=now)
        return st.consecutive_failures



async def run_cycle(
    settings: Settings,
    tenant: TenantConfig,
    engine: Engine,
    *,
    now: datetime,
    full: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    client: Any = None,
) -> CycleResult:
    """Run one cycle. Raises a LicsyncError on failure, after recording it; nothing is half-applied."""
    started = time.monotonic()
    try:
        with Session(engine) as s:
            st = s.get(SyncState, tenant.name)
            link = None if (full or st is None) else st.delta_link
        # A deltaLink that is not on the configured Graph (graph_url changed, a database restored from
        # elsewhere) can never work, and following it would send the token elsewhere: resync in full.
        foreign = link is not None and not on_graph(link, tenant.graph_url)
        if foreign:
            link = None
        kind = "delta" if link else "full"
        # A dry run writes nothing at all, not even its cycle row: its marks use cycle 0 and roll back.
        cycle_id = DRY_RUN_CYCLE if dry_run else _new_cycle(engine, tenant.name, kind, now)
    except OperationalError as exc:  # locked by another process, or away: the cycle could not even start
        error = database_error(exc)
        get_logger(tenant=tenant.name).error("cycle_failed", error=str(error), error_type=type(error).__name__)
        raise error from None
    log = get_logger(tenant=tenant.name, cycle_id=cycle_id)
    stats = GraphStats()
    own_client = client is None
    graph = client or GraphClient(tenant, stats=stats)
    if not own_client:
        stats = graph.stats
    result = CycleResult(tenant=tenant.name, cycle_id=cycle_id, kind=kind, dry_run=dry_run, resynced=foreign)
    log.info("cycle_started", kind=kind, dry_run=dry_run)
    if foreign:
        log.warning(
            "delta_link_foreign",
            action="full resync",
            graph_url=tenant.graph_url,
            note="the stored deltaLink is not on the configured graph_url",
        )
    try:
        # Activation authority: renew the lease when due, and check the token's tenant (licsync.leasing).
        await leasing.before_round(settings, tenant, engine, graph, now, dry_run=dry_run)
        # The LMS catalogs (when an OData API is configured) are read whole before the round, in a
        # thread; they are applied inside the round's transaction with the directory changes.
        lms = None
        if tenant.lms_url:
            lms = await asyncio.to_thread(fetch_snapshot, tenant)
        while True:
            try:
                await _round(settings, tenant, engine, graph, result, link, now, dry_run, progress, lms)
                break
            except DeltaTokenExpired:
                if link is None:
                    raise
                log.warning("delta_token_expired", action="full resync")
                link, result.kind, result.resynced = None, "full", True
    except asyncio.CancelledError:
        # Shutdown abandoned the cycle: its transaction rolled back whole; it is not a failure.
        if not dry_run:
            _finish_cycle(engine, result, now, "abandoned")
        log.warning("cycle_abandoned")
        raise
    except LicsyncError as exc:
        if not dry_run:
            failures = _record_failure(settings, engine, tenant.name, cycle_id, now, truncate(str(exc), 500))
            log.error("cycle_failed", error=truncate(str(exc)), error_type=type(exc).__name__, failures=failures)
        raise
    except OperationalError as exc:  # the database failed under the round, which rolled back whole
        error = database_error(exc)
        failures = None
        if not dry_run:
            with suppress(DBAPIError):  # still away: the failure cannot be recorded, only logged
                failures = _record_failure(settings, engine, tenant.name, cycle_id, now, str(error))
        log.error("cycle_failed", error=str(error), error_type=type(error).__name__, failures=failures)
        raise error from None
    except BaseException as exc:
        if not dry_run:
            _record_failure(settings, engine, tenant.name, cycle_id, now, truncate(f"{type(exc).__name__}: {exc}", 500))
        raise
    finally:
        result.requests, result.retries, result.throttled = stats.requests, stats.retries, stats.throttled
        result.duration = time.monotonic() - started
        if own_client:
            await graph.aclose()
    if not dry_run:
        _store_figures(engine, result)
    log.info("cycle_finished", line=result.line(), **result.summary())
    return result


def _store_figures(engine: Engine, result: CycleResult) -> None:
    """The round stored the cycle's summary in its own transaction, before the cycle's Graph
    requests, retries and duration were known: store them now (metrics read them)."""
    try:
        with session_scope(engine) as s:
            cyc = s.get(SyncCycle, result.cycle_id)
            if cyc is not None:
                cyc.summary = result.summary()
    except DBAPIError as exc:  # the cycle is applied; only its figures are lost
        get_logger(tenant=result.tenant, cycle_id=result.cycle_id).warning(
            "cycle_figures_not_stored", error=truncate(str(exc.orig), 300))


async def _round(
    settings: Settings,
    tenant: TenantConfig,
    engine: Engine,
    graph: Any,
    result: CycleResult,
    link: str | None,
    now: datetime,
    dry_run: bool,
    progress: Progress | None,
    lms: Any = None,
) -> None:
    full = link is None
    with Session(engine, expire_on_commit=False) as session, ExitStack() as widened:
        try:
            if full:
                # The whole mirror is written or rewritten: on SQLite, a page cache that holds the
                # indexes being filled (measured at 1M users: the full sync 210 s -> 136 s). Only
                # while rows are written, not during the plan's query: SQLite sizes that query's
                # sorts by the same setting (kept wide throughout, the full sync peaked at 443 MB
                # instead of 324 MB). See benchmarks/README.md.
                widened.enter_context(bulk_mode(session, pause_gc=False))
            writer = DirectoryWriter(session, tenant.name, result.cycle_id, now, full=full)
            delta_link = await read_directory(graph, tenant, writer, link, progress)
            widened.close()
            if writer.counts["entries"] >= BULK_ROWS:
                analyze(session, "directory_user")  # the plan below joins the rows just written
            result.counts = dict(writer.counts)
            ids = None if full else list(users.changed_ids(session, tenant.name, result.cycle_id))
            if lms is not None:
                affected = apply_pulled(session, tenant, lms, now)
                if ids is not None:
                    ids = sorted(set(ids) | affected)
            step = reseat.plan(session, tenant.name, ids, now)
            result.plan, result.step = step.plan, step
            if dry_run:
                result.hold_reason = reseat.guard_reason(settings, step.plan)
                widened.close()
                session.rollback()
                return
            if full:
                widened.enter_context(bulk_mode(session, pause_gc=False))  # the seats and audit rows
            reseat.apply(session, settings, step, now, cycle_id=result.cycle_id)
            result.hold_id, result.hold_reason = step.hold_id, step.hold_reason
            st = _state(session, tenant.name)
            st.delta_link, st.delta_link_at = delta_link, now
            st.last_success_at = st.last_attempt_at = now
            if full:
                st.last_full_at = now
            st.consecutive_failures, st.last_error, st.next_attempt_at = 0, None, None
            cyc = session.get(SyncCycle, result.cycle_id)
            assert cyc is not None
            cyc.kind = result.kind
            cyc.status = "held" if result.hold_id else "ok"
            cyc.finished_at = now
            cyc.summary = result.summary()
            widened.close()
            session.commit()
        except BaseException:
            with suppress(DBAPIError):  # the connection may be what failed: the rollback says so
                widened.close()
            session.rollback()
            raise


def _finish_cycle(engine: Engine, result: CycleResult, now: datetime, status: str) -> None:
    with session_scope(engine) as s:
        cyc = s.get(SyncCycle, result.cycle_id)
        if cyc is not None:
            cyc.kind, cyc.status, cyc.finished_at, cyc.summary = result.kind, status, now, result.summary()
