"""The one step every cause of a seat change ends in: plan → guarded apply → follow-ups → grace → notify.

A Graph round, an enrollment or activation import, a learner removal, an approval of held frees,
a user-sync file, an activity ingest, a role import: each changes facts, then calls
:func:`reseat` with the ids it touched (``None``: the whole tenant). The step

1. asks the tenant's seat model (``licsync.seat_models``) for a plan, with the tenant's open seats
   read once;
2. applies it through the one writer (``ledger.apply_plan``), holding its frees for an admin's
   approval when they look like a mass free (Entra's accidental-delete guard, SPEC §5 ``holds``);
3. runs the model's follow-ups (a first-access period rollover, the overage tiers of a ``tiered`` key);
4. reads the model's figures once, and hands them to the day's ledger snapshot, the grace machine
   and the notifications — so a mail, the status and ``/metrics`` show the same numbers;

all inside the caller's transaction: nothing is announced that did not happen, and nothing that
happened goes unannounced. Adapters never call back up here; they return the ids they touched.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlmodel import Session

from licsync import forecast_view, ledger
from licsync.config import Settings
from licsync.db.models import AuditLog, MassFreeHold
from licsync.notify import events
from licsync.notify.audience import Figures as MailFigures
from licsync.notify.audience import load_figures
from licsync.seat_models.models import Figures, SeatModel, for_tenant
from licsync.seats import Plan, SeatChange, hold_reason
from licsync.subscriptions import registry
from licsync.subscriptions.grace import Transition
from licsync.subscriptions.terms import Terms


@dataclass
class Step:
    """One reseat: the plan, what happened to it, and the figures read once after it."""

    tenant: str
    terms: Terms | None
    model: SeatModel
    plan: Plan
    hold_id: str | None = None
    hold_reason: str | None = None
    figures: Figures | None = None
    transitions: list[Transition] = field(default_factory=list)

    def sentence(self, change: SeatChange) -> str:
        """A person's sentence for one change, in the words of the model that planned it."""
        verb = {"take": "takes a seat", "free": "frees a seat", "refuse": "is refused a seat"}[change.action]
        return f"{change.holder} {verb}: {self.model.describe(str(change.reason))}"

    def rows(self) -> list[dict[str, str]]:
        return [{"holder": c.holder, "action": c.action, "reason": str(c.reason), "sentence": self.sentence(c)}
                for c in self.plan.changes()]


def plan(session: Session, tenant: str, ids: Iterable[str] | None, now: datetime) -> Step:
    """Plan with the tenant's seat model; nothing is written."""
    terms, model = for_tenant(session, tenant)
    p = model.plan(session, tenant, terms, ids, now, consumed=model.consumed(session, tenant))
    return Step(tenant, terms, model, p)


def guard_reason(settings: Settings, p: Plan) -> str | None:
    """Why this plan's frees must wait for an admin (``[seats] mass_free_*``), or None."""
    return hold_reason(p, threshold=settings.seats.mass_free_threshold, fraction=settings.seats.mass_free_fraction)


def apply(session: Session, settings: Settings, step: Step, now: datetime, *, cycle_id: int | None = None,
          actor: str = "licsync", guard: bool = True) -> Step:
    """Apply a planned step and everything that follows it. ``guard=False``: an admin approved the frees."""
    p = step.plan
    why = guard_reason(settings, p) if guard else None
    if why is not None:
        step.hold_id, step.hold_reason = _hold(session, step.tenant, p, why, now, cycle_id), why
        p = p.without_frees()
    ledger.apply_plan(session, step.tenant, p, now, cycle_id=cycle_id, actor=actor)
    tier_events = step.model.follow_up(session, settings, step.tenant, step.terms, now, cycle_id=cycle_id)
    step.figures = after_change(session, settings, step.tenant, now, cycle_id=cycle_id, hold_id=step.hold_id,
                                tier_events=tier_events, step=step)
    return step


def reseat(session: Session, settings: Settings, tenant: str, ids: Iterable[str] | None, now: datetime, *,
           cycle_id: int | None = None, actor: str = "licsync") -> Step:
    """Plan these users again (``None``: the whole tenant) and apply, behind the mass-free guard."""
    return apply(session, settings, plan(session, tenant, ids, now), now, cycle_id=cycle_id, actor=actor)


def figures(session: Session, tenant: str, now: datetime) -> tuple[Terms | None, SeatModel, Figures]:
    """The tenant's terms, model and figures: the one answer every face shows."""
    terms, model = for_tenant(session, tenant)
    return terms, model, model.figures(session, tenant, terms, now)


def tenant_zone(settings: Settings, tenant: str) -> tzinfo:
    """The tenant's time zone (``[[tenant]] timezone``): its business days and its "today"."""
    cfg = next((t for t in settings.tenant if t.name == tenant), None)
    return UTC if cfg is None or cfg.timezone == "UTC" else ZoneInfo(cfg.timezone)


def mail_figures(session: Session, tenant: str, now: datetime) -> MailFigures:
    _terms, _model, f = figures(session, tenant, now)
    return load_figures(session, tenant, purchased=f.purchased, consumed=f.consumed)


def after_change(session: Session, settings: Settings, tenant: str, now: datetime, *, cycle_id: int | None = None,
                 hold_id: str | None = None, tier_events: Iterable[Any] = (), step: Step | None = None) -> Figures:
    """Figures once → the day's snapshot → the grace machine → the notifications. Also the
    between-cycles grace job and an activation run this, so expiry and windows act without a sync."""
    registry.cap_grace_days(session, tenant, settings.seats.grace_days)
    terms, _model, f = figures(session, tenant, now)
    ledger.snapshot_ledger(session, tenant, now, purchased=f.purchased, consumed=f.consumed,
                           tz=tenant_zone(settings, tenant))
    transitions = registry.evaluate_grace(session, tenant, f.consumed, now, cycle_id=cycle_id,
                                          seats=None if terms is None else f.purchased)
    if step is not None:
        step.transitions = list(transitions)
    mail = load_figures(session, tenant, purchased=f.purchased, consumed=f.consumed)
    for e in tier_events:
        if e.kind in ("overage_minor", "overage_major"):
            events.overage(session, settings, tenant, mail, tier=e.kind.removeprefix("overage_"), since=e.since,
                           now=now, upgrade_at=e.upgrade_at)
    if cycle_id is not None:
        events.on_cycle(session, settings, tenant, transitions=transitions, now=now, figures=mail, hold_id=hold_id)
        # seats forecast to run out soon (once per crossing), from the same figures
        forecast_view.announce(session, settings, tenant, now, purchased=f.purchased, consumed=f.consumed)
    else:
        events.on_change(session, settings, tenant, transitions=transitions, now=now, figures=mail)
        if hold_id is not None:
            events.mass_free_held(session, settings, tenant, hold_id=hold_id, now=now, figures=mail)
    return f


def after_activation(session: Session, settings: Settings, result: Any, now: datetime) -> None:
    """A subscription was activated or renewed; when it moved, the first tenant's admins hear of it
    (and its grace window there ends: the subscription is no longer that tenant's)."""
    after_change(session, settings, result.tenant, now)
    if result.previous_tenant:
        t = result.terms
        events.subscription_moved(session, settings, from_tenant=result.previous_tenant, subscription_id=t.id,
                                  customer=t.customer, seats=t.seats, now=now)


def on_sync_failed(session: Session, settings: Settings, tenant: str, *, failures: int, error: str,
                   now: datetime) -> None:
    """A cycle failed: after several in a row, the admins hear of it (once per streak)."""
    events.sync_failed(session, settings, tenant, failures=failures, error=error, now=now)


def _hold(session: Session, tenant: str, p: Plan, reason: str, now: datetime, cycle_id: int | None) -> str:
    """Keep the frees of a plan for an admin's approval; a newer hold supersedes older ones."""
    for old in session.exec(  # type: ignore[call-overload]
        select(MassFreeHold).where(MassFreeHold.tenant == tenant, MassFreeHold.status == "pending")
    ).scalars():
        old.status, old.decided_at, old.decided_by = "superseded", now, "licsync"
    hold_id = "hold-" + secrets.token_hex(4)
    session.add(MassFreeHold(id=hold_id, tenant=tenant, created_at=now, status="pending", reason=reason,
                             frees=len(p.frees), plan=[[c.holder, str(c.reason)] for c in p.frees],
                             cycle_id=cycle_id))
    session.add(AuditLog(at=now, tenant=tenant, cycle_id=cycle_id, action="mass_free_held", subject=hold_id,
                         detail={"frees": len(p.frees), "reason": reason}))
    return hold_id


def only_frees(step: Step, ids: Iterable[str]) -> Step:
    """The step with only the frees of these ids (an approval frees what was held, and takes nothing)."""
    wanted = set(ids)
    frees = tuple(c for c in step.plan.frees if c.holder in wanted)
    p = Plan(frees=frees, consumed_before=step.plan.consumed_before, considered=len(wanted), now=step.plan.now)
    return replace(step, plan=p)
