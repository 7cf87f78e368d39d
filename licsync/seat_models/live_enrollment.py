"""The ``live_enrollment`` counting model — LXP (SPEC §1, seed 001). Pure: facts in, a ``Plan`` out.

A user holds a seat ("is an active user") when all hold:

1. the user has a unique id: the account exists in the tenant's directory, is not soft- or
   hard-deleted, and is enabled (a deactivated or removed user is not active);
2. the user has at least one enrollment — a learner enrollment on a course that is not deleted,
   on that catalog's learner list (as in the ``enrollment`` model);
3. at least one of those enrollments is **live** now: it has no ``expires_at``, or it expires
   after now. Access is not needed: the potential to access a live enrollment is enough.

Expiring every enrollment of a user frees the seat with ``all_enrollments_expired``; the
enrollments stay (the completion records are kept), so setting a later expiry takes the seat again.

Reuses (``reuse_limit``, default 3, per license year). A seat is *reused* when a new unique user
becomes active in the place of one who left. licsync counts, per license year, the unique users
who held a seat at some time in it (``handed``); the first ``seats`` of them filled the seats, and
every one after that is a reuse: ``reuses = max(0, handed - max(seats, peak))`` (users beyond the
seats during an overage are overage, not reuses). The year allows
``seats × reuse_limit`` reuses, so at most ``seats × (1 + reuse_limit)`` unique users — with the
seed's 1,000 seats and reuse limit 3: the first cohort of 1,000 and three more. A user who comes
back in the same year (a new enrollment after expiry) is not a new unique user and uses no reuse.
Beyond the limit a new unique user is refused (``reuse_limit``) under the ``block`` overage mode,
and takes the seat flagged ``reuse_limit_exceeded`` under every other mode (fair usage: counted
and reported, for the account manager to act on).

Overage modes: ``block`` refuses takes beyond ``seats`` (``seat_limit``) as the enrollment model
does; ``tiered`` (LXP's own) lets them in and ``licsync.seat_models.overage`` classifies the overage
in business days; ``grace`` and ``bill`` let them in as well.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from licsync.seat_models.reasons import ModelReason
from licsync.seats import ACCOUNT_REASONS, Account, Plan, Reason, SeatChange, account_reason

DEFAULT_REUSE_LIMIT = 3


@dataclass(frozen=True, slots=True)
class LiveEnrollment:
    """One learner enrollment of the user (admin assignments are not enrollments)."""

    catalog_id: str
    course_id: str
    course_status: str = "published"  # published | unpublished | deleted
    on_learner_list: bool = True
    expires_at: datetime | None = None

    @property
    def counts(self) -> bool:
        """An enrollment at all: the course is not deleted and the user is on the catalog's list."""
        return self.course_status != "deleted" and self.on_learner_list

    def live(self, now: datetime) -> bool:
        return self.counts and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class LiveHolder:
    holder_id: str
    account: Account | None  # None: not in the directory mirror
    enrollments: tuple[LiveEnrollment, ...] = ()
    holds_seat: bool = False
    handed_this_year: bool = False  # held a seat at some time in the current license year
    last_release_reason: str | None = None
    first_enrolled_at: datetime | None = None  # orders takes when seats are limited


@dataclass(frozen=True, slots=True)
class LiveTerms:
    seats: int  # the effective seats (the key's, or the tier an automatic upgrade moved to)
    overage: str = "tiered"  # grace | block | tiered | bill
    reuse_limit: int = DEFAULT_REUSE_LIMIT


@dataclass(frozen=True, slots=True)
class ReuseFigures:
    """How the license year's seats were handed out, for status and reports."""

    seats: int
    reuse_limit: int
    handed: int  # unique users who held a seat at some time in the license year
    peak: int = 0  # the most seats held at once in the year: users beyond ``seats`` were overage

    @property
    def reuses(self) -> int:
        """Replacements: unique users beyond the most that ever held seats at once. Three users on
        two seats with nobody leaving are an overage of one, not a reuse."""
        return max(0, self.handed - max(self.seats, self.peak))

    @property
    def allowance(self) -> int:
        return self.seats * self.reuse_limit

    @property
    def left(self) -> int:
        return max(0, self.allowance - self.reuses)

    @property
    def beyond_limit(self) -> int:
        return max(0, self.reuses - self.allowance)

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "reuse_limit": self.reuse_limit,
            "unique_users": self.handed,
            "reuses": self.reuses,
            "allowance": self.allowance,
            "left": self.left,
            "beyond_limit": self.beyond_limit,
            "exceeded": self.beyond_limit > 0,
        }


def evaluate(h: LiveHolder, now: datetime) -> tuple[bool, str]:
    """Is this user an active user at ``now``, and why (not)."""
    gone = account_reason(h.account)
    if gone is not None:
        return False, gone
    counting = [e for e in h.enrollments if e.counts]
    if any(e.live(now) for e in counting):
        if h.last_release_reason in ACCOUNT_REASONS:
            return True, Reason.RESTORED
        return True, ModelReason.ENROLLMENT_LIVE
    if counting:
        return False, ModelReason.ALL_ENROLLMENTS_EXPIRED
    if not h.enrollments:
        return False, Reason.LAST_ENROLLMENT_REMOVED
    if any(not e.on_learner_list for e in h.enrollments):
        return False, Reason.REMOVED_FROM_LEARNER_LIST
    return False, Reason.COURSE_DELETED


def plan(
    holders: Iterable[LiveHolder],
    *,
    consumed_before: int,
    handed_this_year: int,
    terms: LiveTerms,
    now: datetime,
    peak: int = 0,
) -> Plan:
    """The seats to take and free. ``handed_this_year`` counts the year's unique users so far.

    Frees come first; takes are granted in order of first enrollment, then holder id (the same
    inputs always give the same plan). Under ``block`` a take beyond ``seats`` is refused; a take
    by a new unique user beyond the year's reuses is refused (``block``) or flagged (other modes).
    """
    takes: list[tuple[LiveHolder, str]] = []
    frees: list[SeatChange] = []
    considered = 0
    for h in holders:
        considered += 1
        qualifies, reason = evaluate(h, now)
        if qualifies and not h.holds_seat:
            takes.append((h, reason))
        elif not qualifies and h.holds_seat:
            frees.append(SeatChange(h.holder_id, "free", reason))  # type: ignore[arg-type]
    takes.sort(key=lambda t: (t[0].first_enrolled_at is None, t[0].first_enrolled_at or now, t[0].holder_id))
    frees.sort(key=lambda c: c.holder)
    room = terms.seats - (consumed_before - len(frees)) if terms.overage == "block" else None
    handed = handed_this_year
    most = max(terms.seats, peak) + terms.seats * terms.reuse_limit  # overage users are not reuses
    granted: list[SeatChange] = []
    refused: list[SeatChange] = []
    for h, reason in takes:
        new_user = not h.handed_this_year
        if room is not None and room <= 0:
            refused.append(SeatChange(h.holder_id, "refuse", Reason.SEAT_LIMIT))
            continue
        if new_user and handed >= most:
            if terms.overage == "block":
                refused.append(SeatChange(h.holder_id, "refuse", ModelReason.REUSE_LIMIT))  # type: ignore[arg-type]
                continue
            reason = ModelReason.REUSE_LIMIT_EXCEEDED
        granted.append(SeatChange(h.holder_id, "take", reason))  # type: ignore[arg-type]
        if room is not None:
            room -= 1
        if new_user:
            handed += 1
    return Plan(tuple(granted), tuple(frees), tuple(refused), consumed_before, considered, now)
