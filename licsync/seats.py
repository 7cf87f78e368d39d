"""The seat core: who holds a seat, and why. Pure: facts in, a frozen ``Plan`` out.

This module implements the ``enrollment`` counting model of LMS365 / Learn365 (SPEC §1). A
directory user holds a seat when all hold:

1. the account exists: not soft-deleted, not hard-deleted, and ``accountEnabled`` is true;
2. the user is enrolled as a learner in at least one course that is not deleted (an unpublished
   course still counts);
3. the user is on the learner list of that course's catalog.

An admin assignment is not an enrollment, so an admin who is not enrolled does not count, and an
enrolled admin does. An add-on identity that counts on activation (Flow365) holds a seat from
activation until deactivation, enrolled or not.

The planner never does I/O: the database adapter (``seat_models.enrollment_store``) loads the facts of the
users a cycle touched, calls :func:`plan`, and applies the result in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from operator import attrgetter


class Reason(StrEnum):
    """Why a seat was taken or freed. These codes are stable: they reach logs, JSON and CSV."""

    # frees
    ACCOUNT_DISABLED = "account_disabled"
    ACCOUNT_SOFT_DELETED = "account_soft_deleted"
    ACCOUNT_DELETED = "account_deleted"
    LAST_ENROLLMENT_REMOVED = "last_enrollment_removed"
    COURSE_DELETED = "course_deleted"
    REMOVED_FROM_LEARNER_LIST = "removed_from_learner_list"
    DEACTIVATED = "deactivated"
    # takes
    RESTORED = "restored"
    ENROLLED = "enrolled"
    ACTIVATED = "activated"
    # refusals (overage mode ``block``)
    SEAT_LIMIT = "seat_limit"
    # not a seat holder, nothing to do
    NOT_IN_DIRECTORY = "not_in_directory"


ACCOUNT_REASONS = frozenset({Reason.ACCOUNT_DISABLED, Reason.ACCOUNT_SOFT_DELETED, Reason.ACCOUNT_DELETED})

_SENTENCES: dict[Reason, str] = {
    Reason.ACCOUNT_DISABLED: "the account is disabled in Microsoft Entra ID",
    Reason.ACCOUNT_SOFT_DELETED: "the account was deleted (restorable for 30 days)",
    Reason.ACCOUNT_DELETED: "the account was permanently deleted",
    Reason.LAST_ENROLLMENT_REMOVED: "the user is no longer enrolled in any course",
    Reason.COURSE_DELETED: "every course the user was enrolled in was deleted",
    Reason.REMOVED_FROM_LEARNER_LIST: "the user was removed from the learner list of every catalog they trained in",
    Reason.DEACTIVATED: "the add-on account was deactivated",
    Reason.RESTORED: "the account is back and the user is still enrolled",
    Reason.ENROLLED: "the user is enrolled in a course",
    Reason.ACTIVATED: "the user activated an add-on account that counts on activation",
    Reason.SEAT_LIMIT: "every seat is taken and the subscription blocks seats beyond its maximum",
    Reason.NOT_IN_DIRECTORY: "the user is not (yet) in the tenant's directory",
}


def describe(reason: str) -> str:
    """A sentence a person can read for a reason code."""
    try:
        return _SENTENCES[Reason(reason)]
    except ValueError:
        return reason.replace("_", " ")


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True, slots=True)
class Account:
    """The directory's view of one account."""

    enabled: bool | None = True  # None: Graph did not say; never a reason to free a seat
    deleted: str = "none"  # none | soft | hard


@dataclass(frozen=True, slots=True)
class EnrollmentFact:
    catalog_id: str
    course_id: str
    course_status: str = "published"  # published | unpublished | deleted
    role: str = "learner"  # learner | admin
    on_learner_list: bool = True


@dataclass(frozen=True, slots=True)
class Holder:
    """Everything the planner needs about one possible seat holder."""

    holder_id: str
    account: Account | None  # None: not in the directory mirror
    enrollments: tuple[EnrollmentFact, ...] = ()
    activated: bool | None = None  # add-on identity (Flow365): True while active, False once deactivated
    holds_seat: bool = False
    last_release_reason: str | None = None
    first_enrolled_at: datetime | None = None  # orders takes when seats are limited


@dataclass(frozen=True, slots=True)
class Limits:
    """The subscription terms the planner needs. ``None`` limits mean: count, never refuse."""

    seats: int
    overage: str = "grace"  # grace | block | tiered | bill


@dataclass(frozen=True, slots=True)
class SeatFigures:
    """A tenant's seat pool: purchased and consumed, and what follows from them. Every seat model
    answers with these (``SeatModel.figures``); available goes negative in overage."""

    purchased: int
    consumed: int

    @property
    def available(self) -> int:
        return self.purchased - self.consumed

    @property
    def overage(self) -> int:
        return max(0, self.consumed - self.purchased)


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True, slots=True)
class SeatChange:
    holder: str
    action: str  # take | free | refuse
    reason: Reason

    @property
    def sentence(self) -> str:
        verb = {"take": "takes a seat", "free": "frees a seat", "refuse": "is refused a seat"}[self.action]
        return f"{self.holder} {verb}: {describe(self.reason)}"


@dataclass(frozen=True, slots=True)
class Plan:
    takes: tuple[SeatChange, ...] = ()
    frees: tuple[SeatChange, ...] = ()
    refused: tuple[SeatChange, ...] = ()
    consumed_before: int = 0
    considered: int = 0
    now: datetime | None = field(default=None, compare=False)
    considered_ids: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def consumed_after(self) -> int:
        return self.consumed_before + len(self.takes) - len(self.frees)

    @property
    def is_empty(self) -> bool:
        return not (self.takes or self.frees or self.refused)

    def changes(self) -> tuple[SeatChange, ...]:
        return self.frees + self.takes + self.refused

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.changes():
            key = f"{c.action}:{c.reason}"
            out[key] = out.get(key, 0) + 1
        return out

    def without_frees(self) -> Plan:
        """The same plan with its frees held back (the mass-free guard)."""
        return Plan(self.takes, (), self.refused, self.consumed_before, self.considered, self.now, self.considered_ids)


def account_reason(account: Account | None) -> Reason | None:
    """Why this account cannot hold a seat (rule 1 of every directory-based model), or None."""
    if account is None:
        return Reason.NOT_IN_DIRECTORY
    if account.deleted == "hard":
        return Reason.ACCOUNT_DELETED
    if account.deleted == "soft":
        return Reason.ACCOUNT_SOFT_DELETED
    if account.enabled is False:
        return Reason.ACCOUNT_DISABLED
    return None


def evaluate(h: Holder) -> tuple[bool, Reason]:
    """Does this holder qualify for a seat under the ``enrollment`` model, and why (not)."""
    if h.activated:
        return True, Reason.ACTIVATED
    if h.account is None:
        return False, Reason.DEACTIVATED if h.activated is False else Reason.NOT_IN_DIRECTORY
    gone = account_reason(h.account)
    if gone is not None:
        return False, gone
    learner = [e for e in h.enrollments if e.role == "learner"]
    if any(e.on_learner_list and e.course_status != "deleted" for e in learner):
        if h.last_release_reason in ACCOUNT_REASONS:
            return True, Reason.RESTORED
        return True, Reason.ENROLLED
    if not learner:
        return False, Reason.LAST_ENROLLMENT_REMOVED
    if any(not e.on_learner_list for e in learner):
        return False, Reason.REMOVED_FROM_LEARNER_LIST
    return False, Reason.COURSE_DELETED


def plan(
    holders: Iterable[Holder],
    *,
    consumed_before: int,
    limits: Limits | None = None,
    now: datetime | None = None,
    keep_ids: bool = True,
) -> Plan:
    """Turn the facts of the holders a cycle touched into the seats to take and free.

    ``consumed_before`` is the tenant's count of open seats before the plan, so that the
    ``block`` overage mode can refuse the takes that would go beyond the maximum. Frees are
    counted first; takes are granted in order of first enrollment, then holder id, so the
    same inputs always give the same plan.

    Only the changes are kept, not the holders' facts, so a plan over a whole tenant costs
    memory in proportion to its seats taken and freed. ``keep_ids=False`` also leaves out
    ``considered_ids`` (a full reconcile, which considered everyone).
    """
    takes: list[SeatChange] = []
    firsts: dict[str, datetime] = {}  # first enrolments, where known: they order the takes
    frees: list[SeatChange] = []
    considered: list[str] = []
    n = 0
    for h in holders:
        n += 1
        if keep_ids:
            considered.append(h.holder_id)
        qualifies, reason = evaluate(h)
        if qualifies and not h.holds_seat:
            takes.append(SeatChange(h.holder_id, "take", reason))
            if h.first_enrolled_at is not None:
                firsts[h.holder_id] = h.first_enrolled_at
        elif not qualifies and h.holds_seat:
            frees.append(SeatChange(h.holder_id, "free", reason))
    if firsts:
        takes.sort(key=lambda c: (c.holder not in firsts, firsts.get(c.holder) or now, c.holder))
    else:  # nothing to order by but the id: no key tuple per take (a first sync takes most of the tenant)
        takes.sort(key=attrgetter("holder"))
    frees.sort(key=attrgetter("holder"))
    granted: list[SeatChange] | tuple[SeatChange, ...] = takes
    refused: list[SeatChange] = []
    if limits is not None and limits.overage == "block":
        room = limits.seats - (consumed_before - len(frees))
        granted = takes[: max(0, room)]
        refused = [SeatChange(c.holder, "refuse", Reason.SEAT_LIMIT) for c in takes[max(0, room) :]]
    return Plan(tuple(granted), tuple(frees), tuple(refused), consumed_before, n, now, tuple(considered))


def hold_reason(plan: Plan, *, threshold: int, fraction: float) -> str | None:
    """Why this plan must wait for an admin's approval, or None (Entra's accidental-delete guard)."""
    n = len(plan.frees)
    if n == 0:
        return None
    if n > threshold:
        return f"would free {n} seats, more than mass_free_threshold ({threshold})"
    if plan.consumed_before and n > fraction * plan.consumed_before and n > 1:
        pct = 100 * n / plan.consumed_before
        return (
            f"would free {n} of {plan.consumed_before} consumed seats ({pct:.1f}%), "
            f"more than mass_free_fraction ({fraction:.0%})"
        )
    return None
