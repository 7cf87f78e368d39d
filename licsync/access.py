"""Is this user licensed right now? The launch-time access decision, pure.

Reason codes (stable: the platform, ``explain`` and the API return them verbatim):

- ``no_subscription`` (not licensed): the tenant has no active subscription (none, or deactivated).
- ``no_seat`` (not licensed): the user holds no seat.
- ``not_started`` (not licensed): the subscription's period has not begun.
- ``subscription_expired`` (not licensed): expiry grace is enforced, nobody is licensed.
- ``lease_expired`` (not licensed): the activation authority's lease ran out and its grace is enforced.
- ``beyond_seat_limit`` (not licensed): seat-limit grace is enforced and the seat ranks beyond ``seats``.
- ``within_seat_limit`` (licensed): seat-limit grace is enforced and the seat is among the first ``seats``.
- ``grace_period`` (licensed): grace is active, every seat holder keeps working (days left in the sentence).
- ``seat_held`` (licensed): the user holds a seat and nothing else applies.
- ``seat_on_first_access`` (licensed): no seat yet under a model whose first launch takes one
  (``first_access``); the launch itself consumes it.

The grace record is taken *as of now* (``grace.effective``): an expiry or a window that closed
since the last cycle changes the decision at once, not at the next sync.

Seat rank: the 1-based position of the user's open seat among the tenant's open seats ordered by
``(acquired_at, seat id)``, oldest first. The id breaks ties, so the order is stable across cycles
and replicas and the same users lose access at seat-limit enforcement every time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from licsync.subscriptions import grace as grace_mod
from licsync.subscriptions.grace import GraceRecord
from licsync.subscriptions.terms import Terms

REASONS = ("no_subscription", "no_seat", "not_started", "subscription_expired", "beyond_seat_limit",
           "within_seat_limit", "grace_period", "seat_held", "seat_on_first_access", "lease_expired")
LIVE_STATES = ("active", "expired")  # subscription states under which seats can still be licensed


@dataclass(frozen=True)
class Decision:
    """Whether to let the user in, a stable ``reason`` code, and a sentence saying why."""

    licensed: bool
    reason: str
    sentence: str


def seat_ranks(open_seats: Iterable[tuple[str, datetime, int]]) -> dict[str, int]:
    """``{holder: rank}`` from ``(holder, acquired_at, seat_id)`` of the open seats."""
    ordered = sorted(open_seats, key=lambda s: (s[1], s[2]))
    return {holder: rank for rank, (holder, _at, _id) in enumerate(ordered, start=1)}


def _when(dt: datetime | None) -> str:
    return "-" if dt is None else dt.strftime("%Y-%m-%d %H:%M UTC")


def decide(
    holds_seat: bool,
    seat_rank: int | None,
    grace: GraceRecord,
    terms: Terms | None,
    subscription_state: str,
    now: datetime,
    *,
    seat_on_first_use: bool = False,
) -> Decision:
    """The decision and a sentence a learner's admin can act on. ``seat_rank`` is needed only
    when a seat is held and seat-limit grace is enforced (ValueError otherwise)."""
    if terms is None or subscription_state not in LIVE_STATES:
        what = "was deactivated on this tenant" if subscription_state == "deactivated" else "is not activated"
        return Decision(False, "no_subscription", f"No licensed access: the subscription {what}; "
                        "a tenant admin must activate a subscription key.")
    if not holds_seat and seat_on_first_use and terms.started(now):
        record = grace_mod.effective(terms, grace, now)
        if not (record.state == "enforced" and record.reason == "expired"):
            return Decision(True, "seat_on_first_access", f"Licensed: the first launch in subscription {terms.id}'s "
                            "license period takes a seat (first-access counting).")
    if not holds_seat:
        return Decision(False, "no_seat", "No licensed access: the user holds no seat (`licsync explain` names "
                        "the rule that decided).")
    if not terms.started(now):
        return Decision(False, "not_started", f"No licensed access yet: subscription {terms.id} starts at "
                        f"{_when(terms.starts_at)}.")
    record = grace_mod.effective(terms, grace, now)
    if record.state == "enforced" and record.reason == "lease_expired":
        return Decision(False, "lease_expired", f"No licensed access: the activation lease of subscription {terms.id} "
                        f"was not renewed and its grace period ended at {_when(record.ends_at)}.")
    if record.state == "enforced" and record.reason == "expired":
        return Decision(False, "subscription_expired", f"No licensed access: subscription {terms.id} expired at "
                        f"{_when(terms.ends_at)} and its grace period ended at {_when(record.ends_at)}; "
                        "it must be renewed.")
    if record.state == "enforced":
        if seat_rank is None or seat_rank < 1:
            raise ValueError("seat_rank (1-based) is required for a seat holder under seat-limit enforcement")
        if seat_rank > terms.seats:
            return Decision(False, "beyond_seat_limit", f"No licensed access: the seat maximum of {terms.seats} "
                            f"is enforced since {_when(record.ends_at)} and your seat was acquired after the first "
                            f"{terms.seats} (position {seat_rank}); a tenant admin must free or add seats.")
        return Decision(True, "within_seat_limit", f"Licensed: the seat maximum of {terms.seats} is enforced and "
                        f"your seat is among the first {terms.seats} acquired (position {seat_rank}).")
    if record.state == "active":
        left = grace_mod.days_left(record, now)
        why = {"expired": "the subscription expired", "lease_expired": "the activation lease was not renewed"}.get(
            record.reason or "", "the seat maximum is reached")
        return Decision(True, "grace_period", f"Licensed during the grace period ({why}): {left} day"
                        f"{'s' if left != 1 else ''} left, until {_when(record.ends_at)}.")
    return Decision(True, "seat_held", f"Licensed: the user holds a seat of subscription {terms.id}.")
