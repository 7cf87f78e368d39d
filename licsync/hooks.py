"""What follows a change, inside the change's own transaction: grace evaluation and notifications.

Sync cycles, imports, learner-list changes, approvals and activation call these so that an
event's email is enqueued in the same transaction as the change that caused it: nothing is
announced that did not happen, and nothing that happened goes unannounced.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from licsync.config import Settings


def after_apply(
    session: Session, settings: Settings, tenant: str, now: datetime, *, cycle_id: int | None, hold_id: str | None
) -> None:
    """After seats moved: evaluate grace, then announce thresholds, grace, expiry and holds.

    A sync cycle (``cycle_id`` given) also closes a failure streak ("recovered"); other writers
    (imports, approvals, learner-list changes) announce only what their change caused.
    """
    from licsync import forecast_view, reconcile
    from licsync.notify import events
    from licsync.seat_models import dispatch
    from licsync.subscriptions import registry

    # The seat model's own follow-up (first-access period rollover, overage tiers of a tiered key).
    for e in dispatch.after_apply(session, settings, tenant, now, cycle_id=cycle_id):
        if e.kind in ("overage_minor", "overage_major"):
            figures = events.load_figures(session, tenant)
            events.overage(
                session,
                settings,
                tenant,
                figures,
                tier=e.kind.removeprefix("overage_"),
                since=e.since,
                now=now,
                upgrade_at=e.upgrade_at,
            )
    transitions = registry.evaluate_grace(session, tenant, reconcile.consumed(session, tenant), now, cycle_id=cycle_id)
    if cycle_id is not None:
        events.on_cycle(session, settings, tenant, transitions=transitions, now=now, hold_id=hold_id)
        forecast_view.announce(session, settings, tenant, now)  # seats forecast to run out soon (once per crossing)
    else:
        events.on_change(session, settings, tenant, transitions=transitions, now=now)
        if hold_id is not None:
            events.mass_free_held(session, settings, tenant, hold_id=hold_id, now=now)


def on_activation(session: Session, settings: Settings, result: Any, now: datetime) -> None:
    """A subscription was activated or renewed; when it moved, the first tenant's admins hear of it."""
    from licsync import reconcile
    from licsync.notify import events
    from licsync.subscriptions import registry

    transitions = registry.evaluate_grace(session, result.tenant, reconcile.consumed(session, result.tenant), now)
    reconcile.snapshot_ledger(session, result.tenant, now)
    events.on_change(session, settings, result.tenant, transitions=transitions, now=now)
    if result.previous_tenant:
        t = result.terms
        events.subscription_moved(
            session,
            settings,
            from_tenant=result.previous_tenant,
            subscription_id=t.id,
            customer=t.customer,
            seats=t.seats,
            now=now,
        )


def on_sync_failed(
    session: Session, settings: Settings, tenant: str, *, failures: int, error: str, now: datetime
) -> None:
    """A cycle failed: after several in a row, the admins hear of it (once per streak)."""
    from licsync.notify import events

    events.sync_failed(session, settings, tenant, failures=failures, error=error, now=now)
