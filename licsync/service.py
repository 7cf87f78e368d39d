"""Use cases shared by the CLI, the API and the daemon: a sync, an explanation, an approval.

Each function takes its session or engine from the caller and returns plain data.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync import hooks, reconcile, status
from licsync.config import Settings, TenantConfig
from licsync.db.models import AuditLog, MassFreeHold
from licsync.progress import SyncProgress
from licsync.seats import Plan, SeatChange, describe, evaluate
from licsync.sync import CycleResult, run_cycle


async def sync_once(
    settings: Settings,
    tenant: TenantConfig,
    engine: Engine,
    *,
    now: datetime,
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


def explain_user(session: Session, tenant: str, user_id: str, now: datetime) -> dict[str, Any]:
    """Does this user hold a seat, are they licensed, and why / since when (SPEC §5 ``explain``)."""
    from licsync.access import decide
    from licsync.subscriptions import registry

    seat = status.seat_of(session, tenant, user_id)
    found = registry.active_subscription(session, tenant)
    terms = found[1] if found is not None else None
    sub_state = registry.subscription_summary(session, tenant, now)["state"]
    grace = registry.current_grace(session, tenant, now)
    # The rank (a count over the open seats) matters only while seat-limit grace is enforced.
    ranked = seat is not None and grace.state == "enforced" and grace.reason == "seat_limit"
    rank = registry.seat_rank(session, tenant, user_id) if ranked else None
    decision = decide(seat is not None, rank, grace, terms, sub_state, now)
    holder = reconcile.load_holders(session, tenant, [user_id])[0]
    qualifies, why = evaluate(holder)
    out: dict[str, Any] = {
        "user_id": user_id,
        "holds_seat": seat is not None,
        "licensed": decision.licensed,
        "reason": decision.reason,
        "since": status._iso(seat.acquired_at) if seat is not None else None,
        "sentence": decision.sentence,
        "seat_reason": seat.acquire_reason if seat is not None else why.value,
        "seat_sentence": describe(seat.acquire_reason if seat is not None else why),
        "qualifies_now": qualifies,
        "seat_rank": rank,
    }
    if seat is None:
        last = status.last_release(session, tenant, user_id)
        if last is not None:
            out["freed_at"] = status._iso(last.released_at)
            out["freed_reason"] = last.release_reason
    return out


def approve_hold(
    session: Session, settings: Settings, hold_id: str, now: datetime, *, actor: str = "cli"
) -> tuple[int, int] | None:
    """Apply a held mass free. Each held user is re-planned against today's facts first, so a user
    who qualifies again by now keeps the seat. Returns (freed, kept) or None when no such pending hold."""
    hold = session.get(MassFreeHold, hold_id)
    if hold is None or hold.status != "pending":
        return None
    held = [h for h, _reason in (hold.plan or [])]
    fresh = reconcile.plan_for(session, hold.tenant, held, now)
    frees = fresh.frees
    plan = Plan(frees=frees, consumed_before=fresh.consumed_before, considered=len(held), now=now)
    reconcile.apply_plan(session, hold.tenant, plan, now, actor=actor)
    hooks.after_apply(session, settings, hold.tenant, now, cycle_id=None, hold_id=None)
    hold.status, hold.decided_at, hold.decided_by = "approved", now, actor
    session.add(
        AuditLog(at=now, tenant=hold.tenant, actor=actor, action="mass_free_approved", subject=hold_id,
                 detail={"freed": len(frees), "kept": len(held) - len(frees)})
    )
    return len(frees), len(held) - len(frees)


def changes_as_rows(changes: tuple[SeatChange, ...]) -> list[dict[str, str]]:
    return [{"holder": c.holder, "action": c.action, "reason": str(c.reason), "sentence": c.sentence} for c in changes]
