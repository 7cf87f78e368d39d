"""One door per seat model: plan, follow-up and status by the policy of the tenant's subscription.

The ``enrollment`` model stays where it is (``licsync.reconcile`` / ``licsync.seats``). For the
other policies these are what the shared code paths call:

* ``plan_for(session, tenant, ids, now)`` — the plan of the tenant's model, or None for the
  ``enrollment`` model (the caller then uses ``reconcile.plan_for``). ``reconcile.plan_for``
  delegates here first, so sync cycles, imports, learner-list changes and approvals of held frees
  plan with the right model.
* ``after_apply(session, settings, tenant, now, cycle_id=…)`` — what follows a change of seats
  inside its transaction: the first-access period rollover, and the overage tiers of a ``tiered``
  subscription. Returns the tier events (``overage_minor``, ``overage_major``, …) for the
  notifications hook. Idempotent: calling it twice in a transaction changes nothing the second time.
* ``status_block(session, settings, tenant, now)`` — the model's additions to ``status``.

Models and their seats: ``live_enrollment`` and ``first_access`` hold ordinary ``seat`` rows (the
holder of a first-access seat is the learner's activity id); ``role`` holds pool seats only
(``pool_seat``), so a sync cycle plans nothing for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlmodel import Session

from licsync import reconcile
from licsync.config import Settings
from licsync.seat_models import access_store, live_store, org_store, overage_store, role_store
from licsync.seat_models.overage import TierEvent
from licsync.seats import Plan
from licsync.subscriptions import registry
from licsync.subscriptions.terms import Terms

MODELS = ("enrollment", "live_enrollment", "first_access", "role")


def terms_of(session: Session, tenant: str) -> Terms | None:
    found = registry.active_subscription(session, tenant)
    return None if found is None else found[1]


def policy_of(session: Session, tenant: str) -> str:
    terms = terms_of(session, tenant)
    return "enrollment" if terms is None else terms.policy


def plan_for(session: Session, tenant: str, ids: Iterable[str] | None, now: datetime) -> Plan | None:
    """The plan of the tenant's seat model, or None when it is the ``enrollment`` model."""
    terms = terms_of(session, tenant)
    if terms is None or terms.policy == "enrollment":
        return None
    if terms.policy == "live_enrollment":
        return live_store.plan_for(session, tenant, terms, ids, now)
    if terms.policy == "first_access":
        # Seats follow consumption; the period rollover is released by after_apply, past the guard.
        _frees, takes = access_store.plan_for(session, tenant, terms, now)
        return Plan(takes=takes.takes, consumed_before=reconcile.consumed(session, tenant),
                    considered=len(takes.takes), now=now)
    return Plan(consumed_before=reconcile.consumed(session, tenant), now=now)  # role: pool seats only


def after_apply(session: Session, settings: Settings | None, tenant: str, now: datetime, *,
                cycle_id: int | None = None) -> list[TierEvent]:
    terms = terms_of(session, tenant)
    if terms is None:
        return []
    if terms.policy == "first_access":
        access_store.mirror_seats(session, None, tenant, now, cycle_id=cycle_id)
    return overage_store.evaluate_overage(session, settings, tenant, now, cycle_id=cycle_id)


def status_block(session: Session, settings: Settings | None, tenant: str, now: datetime) -> dict[str, Any]:
    """``{"model": policy, …}``: what the seeds show for the model, to merge into the status JSON."""
    terms = terms_of(session, tenant)
    if terms is None:
        return {"model": "enrollment"}
    out: dict[str, Any] = {"model": terms.policy, "overage_mode": terms.overage}
    if terms.policy == "live_enrollment":
        out["reuse"] = live_store.reuse_figures(session, tenant, terms).as_dict()
        out["orgs"] = [r.as_dict() for r in org_store.org_report(session, tenant, now)]
    if terms.overage == "tiered":
        out |= overage_store.tier_status(session, settings, tenant, terms, now)
    if terms.policy == "first_access":
        out["billing"] = access_store.figures(session, tenant, now)
    if terms.policy == "role":
        report = role_store.pool_report(session, settings, tenant, now)
        out["pools"] = report["pools"]
        out["inactive_assignments"] = None if report.get("inactive") is None else len(report["inactive"])
    return out
