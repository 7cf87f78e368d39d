"""The seat-model interface and its registry: one answer per question, whatever the policy.

A subscription's ``policy`` names its counting model (SPEC §1). Every question about seats — who
takes or frees one (``plan``), what follows a change (``follow_up``), the tenant's figures
(``figures``), does this user hold a seat and why (``seat_since``, ``standing``), what the status
shows beyond the contract (``status_block``), the sentence of a reason code (``describe``) — is
asked of the tenant's model, by every face: status, explain, the access endpoint and its fast
route, the dashboard, ``/metrics``, the mails and the dry-run sentences. Nothing outside a model
branches on the policy.

A new model is one class and one ``register`` call: its policy name becomes valid in keys
(``licsync.subscriptions.policies``) and every face asks it. The defaults here serve models whose
seats are ordinary ``seat`` rows held by directory user ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import select
from sqlmodel import Session

from licsync import ledger
from licsync.config import Settings
from licsync.db.models import Seat
from licsync.seat_models import overage_store
from licsync.seat_models.overage import TierEvent
from licsync.seat_models.reasons import describe
from licsync.seats import Limits, Plan, SeatFigures
from licsync.subscriptions import policies as names
from licsync.subscriptions.terms import Terms

_S = Seat.__table__  # type: ignore[attr-defined]


Figures = SeatFigures  # the tenant-wide seat pool of a step: what every face shows


@dataclass(frozen=True)
class Standing:
    """Does a user hold a seat, and the rule that decided: a stable ``reason`` code, a sentence,
    since when, and whether they would qualify on a re-plan now."""

    holds_seat: bool
    reason: str
    sentence: str
    since: datetime | None = None
    qualifies_now: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class SeatModel:
    """One counting policy. Subclasses set ``policy`` and override what differs from seat rows."""

    policy: ClassVar[str] = ""
    #: a launch takes the seat (first_access): a user without one yet is still let in
    seat_on_first_use: ClassVar[bool] = False

    # ----------------------------------------------------------------- figures

    def limits(self, session: Session, tenant: str, terms: Terms) -> Limits:
        """Purchased seats (a tier upgrade included) and the overage mode."""
        return Limits(seats=ledger.purchased_seats(session, tenant, terms), overage=terms.overage)

    def consumed(self, session: Session, tenant: str) -> int:
        return ledger.consumed(session, tenant)

    def figures(self, session: Session, tenant: str, terms: Terms | None, now: datetime) -> Figures:
        purchased = 0 if terms is None else self.limits(session, tenant, terms).seats
        return Figures(purchased=purchased, consumed=self.consumed(session, tenant))

    def effective_terms(self, session: Session, tenant: str, terms: Terms) -> Terms:
        """The terms with the purchased seats in place of the key's (grace and seat ranks use them).
        Only a ``tiered`` key can be upgraded: other keys cost no read here (the access check's path)."""
        if terms.overage != "tiered" and type(self).limits is SeatModel.limits:
            return terms
        seats = self.limits(session, tenant, terms).seats
        return terms if seats == terms.seats else replace(terms, seats=seats)

    # ----------------------------------------------------------------- plan and follow-ups

    def plan(self, session: Session, tenant: str, terms: Terms | None, ids: Iterable[str] | None, now: datetime, *,
             consumed: int) -> Plan:
        """The seats to take and free for these users (``None``: the whole tenant)."""
        raise NotImplementedError

    def follow_up(self, session: Session, settings: Settings | None, tenant: str, terms: Terms | None,
                  now: datetime, *, cycle_id: int | None) -> list[TierEvent]:
        """What follows an applied plan, in its transaction: the overage tiers of a ``tiered`` key."""
        return overage_store.evaluate_overage(session, settings, tenant, now, cycle_id=cycle_id)

    # ----------------------------------------------------------------- one user

    def seat_since(self, session: Session, tenant: str, user_id: str,
                   seat_row_since: datetime | None) -> datetime | None:
        """When the user's open seat was taken, or None. ``seat_row_since`` is the ``seat`` table's
        answer, already read by the access check's one statement; models with other seats look."""
        return seat_row_since

    def held_reason(self, session: Session, tenant: str, user_id: str) -> str:
        q = select(_S.c.acquire_reason).where(_S.c.tenant == tenant, _S.c.holder == user_id,
                                              _S.c.released_at.is_(None))
        return session.connection().execute(q).scalar_one_or_none() or "seat_held"

    def qualifies(self, session: Session, tenant: str, terms: Terms | None, user_id: str,
                  now: datetime) -> tuple[bool, str]:
        """Would this user hold a seat by the model's rules (limits aside), and the rule's code."""
        raise NotImplementedError

    def standing(self, session: Session, tenant: str, terms: Terms | None, user_id: str, now: datetime) -> Standing:
        """The rule that decides this user's seat, for ``explain``."""
        since = self.seat_since(session, tenant, user_id, _open_seat_since(session, tenant, user_id))
        ok, why = self.qualifies(session, tenant, terms, user_id, now)
        if since is not None:
            held = self.held_reason(session, tenant, user_id)
            return Standing(True, held, self.describe(held), since, ok,
                            {} if ok else {"frees_at_next_sync": why, "frees_sentence": self.describe(why)})
        if ok:
            return self._refused_or_next(session, tenant, terms, user_id, why, now)
        freed_at, freed_reason = _last_release(session, tenant, user_id)
        detail = {} if freed_at is None else {"freed_at": freed_at, "freed_reason": freed_reason}
        return Standing(False, why, self.describe(why), freed_at if freed_reason == why else None, False, detail)

    def _refused_or_next(self, session: Session, tenant: str, terms: Terms | None, user_id: str, why: str,
                         now: datetime) -> Standing:
        """A user who qualifies but holds no seat: refused by a limit (and their place in line), or
        taking one at the next re-plan. The model's own plan says which."""
        p = self.plan(session, tenant, terms, [user_id], now, consumed=self.consumed(session, tenant))
        refused = next((c for c in p.refused if c.holder == user_id), None)
        if refused is None:
            return Standing(False, why, f"{self.describe(why)}; the seat is taken at the next sync", None, True)
        line = ledger.waitlist(session, tenant)
        place = next((i for i, (h, _s) in enumerate(line, start=1) if h == user_id), None)
        since = next((s for h, s in line if h == user_id), None)
        code = str(refused.reason)
        where = f" (place {place} of {len(line)} in the waiting line)" if place else ""
        return Standing(False, code, f"{self.describe(code)}{where}", since, True,
                        {"waitlist_position": place, "waitlist_length": len(line)})

    # ----------------------------------------------------------------- views

    def status_block(self, session: Session, settings: Settings | None, tenant: str, terms: Terms | None,
                     now: datetime) -> dict[str, Any]:
        """What the status shows for the model beyond the contract's keys."""
        if terms is None:
            return {"model": self.policy}
        out: dict[str, Any] = {"model": self.policy, "overage_mode": terms.overage}
        if terms.overage == "tiered":
            out |= overage_store.tier_status(session, settings, tenant, terms, now)
        return out

    def describe(self, reason: str) -> str:
        return describe(reason)


def _open_seat_since(session: Session, tenant: str, user_id: str) -> datetime | None:
    q = select(_S.c.acquired_at).where(_S.c.tenant == tenant, _S.c.holder == user_id, _S.c.released_at.is_(None))
    return session.connection().execute(q).scalar_one_or_none()


def _last_release(session: Session, tenant: str, user_id: str) -> tuple[datetime | None, str | None]:
    q = (select(_S.c.released_at, _S.c.release_reason)
         .where(_S.c.tenant == tenant, _S.c.holder == user_id, _S.c.released_at.is_not(None))
         .order_by(_S.c.released_at.desc()).limit(1))
    row = session.connection().execute(q).first()
    return (None, None) if row is None else (row[0], row[1])


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, SeatModel] = {}


def register(model: SeatModel) -> SeatModel:
    """Make a model the answer for its policy; its name becomes valid in subscription keys."""
    if not model.policy:
        raise ValueError("a seat model needs a policy name")
    names.add(model.policy)
    _REGISTRY[model.policy] = model
    return model


def unregister(policy: str) -> None:
    """For tests that register a model of their own: the model and its policy name go."""
    _REGISTRY.pop(policy, None)
    names.remove(policy)


def registered() -> dict[str, SeatModel]:
    return dict(_REGISTRY)


def model_of(policy: str | None) -> SeatModel:
    """The model of a policy (no subscription: the default policy's, ``enrollment``)."""
    try:
        return _REGISTRY[policy or "enrollment"]
    except KeyError:
        raise LookupError(f"no seat model is registered for policy {policy!r}") from None
