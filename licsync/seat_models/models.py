"""The four built-in seat models (SPEC §1), registered by policy name.

* ``enrollment`` (LMS365): ordinary seats, planned by ``enrollment_store`` and ``licsync.seats``.
* ``live_enrollment`` (LXP): ordinary seats, live enrollments and the year's reuses (``live_store``).
* ``first_access`` (Emtrain): a seat per learner activity id on first interaction (``access_store``);
  a learner without one is let in, the launch takes it.
* ``role`` (eLearn / weCLIMB): pool seats (``pool_seat``), taken and returned by role changes under
  the pool lock (``role_store``); ``purchased`` is the sum of the pools, ``consumed`` the pool seats.

Import :func:`model_of` / :func:`for_tenant` from here: importing this module registers the four.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from licsync import ledger
from licsync.config import Settings
from licsync.db.models import AuditLog, Seat
from licsync.db.models_seat_models import FirstAccessConsumption, PoolSeat, RoleAssignment
from licsync.seat_models import access_store, enrollment_store, live_store, org_store, role_store
from licsync.seat_models import live_enrollment as live
from licsync.seat_models.base import Figures, SeatModel, Standing, model_of, register
from licsync.seat_models.overage import TierEvent
from licsync.seat_models.reasons import ModelReason
from licsync.seats import Limits, Plan, evaluate
from licsync.subscriptions import registry
from licsync.subscriptions.terms import Terms

__all__ = ["Figures", "SeatModel", "Standing", "for_tenant", "model_of"]

_S = Seat.__table__  # type: ignore[attr-defined]
_FA = FirstAccessConsumption.__table__  # type: ignore[attr-defined]
_PS = PoolSeat.__table__  # type: ignore[attr-defined]
_RA = RoleAssignment.__table__  # type: ignore[attr-defined]
_AU = AuditLog.__table__  # type: ignore[attr-defined]


def for_tenant(session: Session, tenant: str) -> tuple[Terms | None, SeatModel]:
    """The tenant's active terms (None without a subscription) and the model that answers for them."""
    found = registry.active_subscription(session, tenant)
    terms = None if found is None else found[1]
    return terms, model_of(None if terms is None else terms.policy)


class EnrollmentModel(SeatModel):
    policy = "enrollment"

    def plan(self, session: Session, tenant: str, terms: Terms | None, ids: Iterable[str] | None, now: datetime, *,
             consumed: int) -> Plan:
        limits = None if terms is None else self.limits(session, tenant, terms)
        return enrollment_store.plan_for(session, tenant, ids, now, consumed=consumed, limits=limits)

    def qualifies(self, session: Session, tenant: str, terms: Terms | None, user_id: str,
                  now: datetime) -> tuple[bool, str]:
        ok, why = evaluate(enrollment_store.load_holders(session, tenant, [user_id])[0])
        return ok, str(why)


class LiveEnrollmentModel(SeatModel):
    policy = "live_enrollment"

    def plan(self, session: Session, tenant: str, terms: Terms | None, ids: Iterable[str] | None, now: datetime, *,
             consumed: int) -> Plan:
        if terms is None:
            return Plan(consumed_before=consumed, now=now)
        seats = self.limits(session, tenant, terms).seats
        return live_store.plan_for(session, tenant, terms, ids, now, consumed=consumed, seats=seats)

    def qualifies(self, session: Session, tenant: str, terms: Terms | None, user_id: str,
                  now: datetime) -> tuple[bool, str]:
        if terms is None:
            return False, "no_subscription"
        ok, why = live.evaluate(live_store.load_holders(session, tenant, [user_id], terms)[0], now)
        return ok, str(why)

    def status_block(self, session: Session, settings: Settings | None, tenant: str, terms: Terms | None,
                     now: datetime) -> dict[str, Any]:
        out = super().status_block(session, settings, tenant, terms, now)
        if terms is not None:
            seats = self.limits(session, tenant, terms).seats
            out["reuse"] = live_store.reuse_figures(session, tenant, terms, seats, now).as_dict()
            out["orgs"] = [r.as_dict() for r in org_store.org_report(session, tenant, now)]
        return out


class FirstAccessModel(SeatModel):
    policy = "first_access"
    seat_on_first_use = True

    def plan(self, session: Session, tenant: str, terms: Terms | None, ids: Iterable[str] | None, now: datetime, *,
             consumed: int) -> Plan:
        """Seats follow consumption; the previous period's seats are released by ``follow_up``."""
        if terms is None:
            return Plan(consumed_before=consumed, now=now)
        _frees, takes = access_store.plan_for(session, tenant, terms, now)
        return Plan(takes=takes.takes, consumed_before=consumed, considered=len(takes.takes), now=now)

    def follow_up(self, session: Session, settings: Settings | None, tenant: str, terms: Terms | None,
                  now: datetime, *, cycle_id: int | None) -> list[TierEvent]:
        """The period rollover: it follows the subscription's calendar, not a read of data, so it
        bypasses the mass-free guard (which exists to stop frees caused by partial data)."""
        if terms is not None:
            frees, _takes = access_store.plan_for(session, tenant, terms, now)
            if frees.frees:
                ledger.apply_plan(session, tenant, frees, now, cycle_id=cycle_id)
        return super().follow_up(session, settings, tenant, terms, now, cycle_id=cycle_id)

    def seat_since(self, session: Session, tenant: str, user_id: str,
                   seat_row_since: datetime | None) -> datetime | None:
        if seat_row_since is not None:
            return seat_row_since
        mine = select(_FA.c.activity_id).where(_FA.c.tenant == tenant, _FA.c.user_id == user_id)
        q = select(func.min(_S.c.acquired_at)).where(_S.c.tenant == tenant, _S.c.holder.in_(mine),
                                                     _S.c.released_at.is_(None))
        return session.connection().execute(q).scalar_one_or_none()

    def held_reason(self, session: Session, tenant: str, user_id: str) -> str:
        return str(ModelReason.FIRST_ACCESS)

    def qualifies(self, session: Session, tenant: str, terms: Terms | None, user_id: str,
                  now: datetime) -> tuple[bool, str]:
        held = self.seat_since(session, tenant, user_id, None) is not None or session.connection().execute(
            select(_S.c.id).where(_S.c.tenant == tenant, _S.c.holder == user_id, _S.c.released_at.is_(None))
        ).first() is not None
        return (True, str(ModelReason.FIRST_ACCESS)) if held else (False, str(ModelReason.NOT_YET_ACCESSED))

    def status_block(self, session: Session, settings: Settings | None, tenant: str, terms: Terms | None,
                     now: datetime) -> dict[str, Any]:
        out = super().status_block(session, settings, tenant, terms, now)
        if terms is not None:
            out["billing"] = access_store.figures(session, tenant, now)
        return out


class RoleModel(SeatModel):
    policy = "role"

    def limits(self, session: Session, tenant: str, terms: Terms) -> Limits:
        return Limits(seats=sum(role_store.key_pools(terms).values()), overage=terms.overage)

    def consumed(self, session: Session, tenant: str) -> int:
        q = select(func.count()).select_from(_PS).where(_PS.c.tenant == tenant)
        return int(session.connection().execute(q).scalar_one())

    def plan(self, session: Session, tenant: str, terms: Terms | None, ids: Iterable[str] | None, now: datetime, *,
             consumed: int) -> Plan:
        """Pool seats move with role changes, decided under the pool lock (``role_store``): a re-plan
        of users changes nothing."""
        return Plan(consumed_before=consumed, now=now)

    def seat_since(self, session: Session, tenant: str, user_id: str,
                   seat_row_since: datetime | None) -> datetime | None:
        q = select(func.min(_PS.c.acquired_at)).where(_PS.c.tenant == tenant, _PS.c.user_id == user_id)
        return session.connection().execute(q).scalar_one_or_none()

    def standing(self, session: Session, tenant: str, terms: Terms | None, user_id: str, now: datetime) -> Standing:
        conn = session.connection()
        pools = [(p, at, role) for p, at, role in conn.execute(
            select(_PS.c.pool, _PS.c.acquired_at, _PS.c.role).where(_PS.c.tenant == tenant, _PS.c.user_id == user_id)
            .order_by(_PS.c.pool))]
        if pools:
            code = str(ModelReason.ROLE_NEEDS_POOL)
            names = ", ".join(f"{p} (role {r})" if r else p for p, _at, r in pools)
            return Standing(True, code, f"{self.describe(code)}: {names}", min(at for _p, at, _r in pools), True,
                            {"pools": [p for p, _at, _r in pools]})
        refusal = conn.execute(
            select(_AU.c.at, _AU.c.detail).where(_AU.c.tenant == tenant, _AU.c.subject == user_id,
                                                 _AU.c.action == "role_refused")
            .order_by(_AU.c.seq.desc()).limit(1)).first()
        roles = [r for (r,) in conn.execute(select(_RA.c.role).where(_RA.c.tenant == tenant, _RA.c.user_id == user_id))]
        if refusal is not None:
            d = refusal[1] or {}
            code = str(d.get("reason") or ModelReason.POOL_FULL)
            return Standing(False, code, f"{self.describe(code)} (pool {d.get('pool')}, role {d.get('role')})",
                            refusal[0], False, {"pool": d.get("pool"), "role": d.get("role"), "roles": roles})
        code = str(ModelReason.NO_POOL_ROLE)
        return Standing(False, code, self.describe(code), None, False, {"roles": roles})

    def status_block(self, session: Session, settings: Settings | None, tenant: str, terms: Terms | None,
                     now: datetime) -> dict[str, Any]:
        out = super().status_block(session, settings, tenant, terms, now)
        if terms is not None:
            report = role_store.pool_report(session, settings, tenant, now)
            out["pools"] = report["pools"]
            out["inactive_assignments"] = None if report.get("inactive") is None else len(report["inactive"])
        return out


for _model in (EnrollmentModel(), LiveEnrollmentModel(), FirstAccessModel(), RoleModel()):
    register(_model)
