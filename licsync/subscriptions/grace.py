"""The grace window of one subscription on one tenant, as a pure state machine.

States: ``none`` → ``active`` (learners keep working, a countdown runs) → ``enforced``.
Reasons: ``expired`` (now ≥ the expiry instant ``terms.ends_at``), ``lease_expired`` (the
activation authority's lease ran out unrenewed: ``lease_until`` passed) and ``seat_limit``
(consumed ≥ seats). ``evaluate`` is called every cycle with an injected ``now``; it returns the
new record and the transitions it made, so callers can audit and notify exactly once each.

Rules, and why:

* A window is ``[started_at, started_at + grace_days)`` exactly. Expiry grace starts at the
  expiry instant even when evaluated later (the customer was promised ``grace_days`` after expiry,
  not after our next cycle); seat-limit grace starts when a cycle first sees the limit reached.
* Lease expiry (SPEC §2): ``lease_until`` is when the lease stops licensing (its expiry plus the
  clock-skew bound); the window starts at that instant, like expiry grace, and its enforcement
  licenses nobody. ``lease_until=None`` means "not known here" (read paths that pass only the
  stored record) and keeps a recorded lease cause; ``NO_LEASE`` means no lease is required.
  Precedence: expired, then lease_expired, then seat_limit.
* Expiry takes precedence over the seat limit when both hold: it is the stronger cause (at its
  enforcement nobody is licensed) and one reason is reported at a time.
* Reason change, active seat-limit grace → expiry: the expiry window replaces the seat-limit one,
  counted from the expiry instant (one ``started`` transition, ``active → active``). Seat-limit
  enforcement is subsumed by expiry enforcement, so no over-limit seat escapes for long.
* Reason change, *enforced* seat limit → expiry: while the seat limit still holds, its enforcement
  stays in force (users beyond the limit do not get their access back because the subscription
  also expired); when the expiry window closes the record becomes enforced/expired
  (``enforced → enforced``). If seats are freed inside the expiry window, the expiry window takes
  over (``enforced → active``) and every seat holder is licensed until it closes.
* Fixing the current cause ends grace (renewal with a later expiry, enough seats freed or added).
  If another cause still holds, a new window starts for it at once: ended, then started.
* A renewal that changes the window (later expiry, other ``grace_days``) moves it; an enforced
  record whose new window is still open becomes active again.
* Overage modes: ``grace`` runs seat-limit grace; ``tiered`` has its own business-day tiers and
  automatic upgrade (``licsync.seat_models.overage``) — a 14-day enforcement would cut in before a
  minor overage could ever become major; ``block`` (seats beyond the maximum are refused when
  planning) and ``bill`` (overage is reported and billed) never do. All modes run expiry grace.
  No grace before the subscription starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from licsync.subscriptions.terms import Terms

STATES = ("none", "active", "enforced")
REASONS = ("seat_limit", "expired", "lease_expired")
NOBODY_LICENSED = ("expired", "lease_expired")  # reasons whose enforcement licenses no learner
NO_LEASE = datetime.max.replace(tzinfo=UTC)  # lease_until when no lease is required
SEAT_LIMIT_GRACE_MODES = ("grace",)
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class GraceRecord:
    """The stored grace state of one tenant and subscription."""

    state: str = "none"
    reason: str | None = None
    started_at: datetime | None = None
    ends_at: datetime | None = None


NO_GRACE = GraceRecord()


@dataclass(frozen=True)
class Transition:
    """One change of grace state. ``at`` is when it took effect (e.g. the expiry instant)."""

    from_state: str
    to_state: str
    reason: str
    at: datetime
    sentence: str
    started_at: datetime | None
    ends_at: datetime | None

    @property
    def kind(self) -> str:
        """``started`` | ``ended`` | ``enforced``: what a notification should announce."""
        if self.to_state == "none":
            return "ended"
        return "enforced" if self.to_state == "enforced" else "started"

    @property
    def action(self) -> str:
        """The audit action: ``grace_started`` | ``grace_ended`` | ``grace_enforced``."""
        return f"grace_{self.kind}"


def _fmt(dt: datetime | None) -> str:
    return "-" if dt is None else dt.strftime("%Y-%m-%d %H:%M UTC")


def cause(terms: Terms, consumed: int | None, record: GraceRecord, now: datetime,
          lease_until: datetime | None = None) -> str | None:
    """Why grace should run now, or None. ``consumed=None`` keeps a recorded seat-limit cause,
    ``lease_until=None`` a recorded lease cause."""
    if not terms.started(now):
        return None
    if terms.expired(now):
        return "expired"
    if lease_until is None:
        if record.state != "none" and record.reason == "lease_expired":
            return "lease_expired"
    elif now >= lease_until:
        return "lease_expired"
    if terms.overage in SEAT_LIMIT_GRACE_MODES:
        if consumed is None:
            return "seat_limit" if record.state != "none" and record.reason == "seat_limit" else None
        if consumed >= terms.seats:
            return "seat_limit"
    return None


def _window(terms: Terms, reason: str, record: GraceRecord, now: datetime,
            lease_until: datetime | None = None) -> tuple[datetime, datetime]:
    if reason == "expired":
        start = terms.ends_at
    elif reason == "lease_expired":
        if lease_until is not None and lease_until != NO_LEASE:
            start = lease_until
        elif record.reason == "lease_expired" and record.started_at is not None:
            start = record.started_at
        else:
            start = now
    elif record.state != "none" and record.reason == "seat_limit" and record.started_at is not None:
        start = record.started_at
    else:
        start = now
    return start, start + timedelta(days=terms.grace_days)


def evaluate(
    terms: Terms, consumed: int | None, record: GraceRecord, now: datetime, lease_until: datetime | None = None
) -> tuple[GraceRecord, list[Transition]]:
    """The new record and the transitions (empty when nothing changes). See the module rules."""
    out: list[Transition] = []
    why = cause(terms, consumed, record, now, lease_until)
    rec = record
    seats_text = f"{consumed} of {terms.seats}" if consumed is not None else f"the {terms.seats}"

    if rec.state != "none" and rec.reason != why:
        if rec.reason == "seat_limit" and why == "expired":
            start, end = _window(terms, "expired", rec, now)
            limit_holds = consumed is None or (
                terms.overage in SEAT_LIMIT_GRACE_MODES and consumed >= terms.seats)
            if rec.state == "enforced" and now >= end:
                new = GraceRecord("enforced", "expired", start, end)
                out.append(Transition("enforced", "enforced", "expired", end,
                                      _enforced_sentence(terms, new, seats_text), start, end))
                return new, out
            if rec.state == "enforced" and limit_holds:
                return rec, out  # the seat-limit enforcement stays until the expiry window closes
            out.append(Transition(rec.state, "active", "expired", start,
                                  f"Subscription {terms.id} expired at {_fmt(start)} during seat-limit grace; "
                                  f"the expiry grace window replaces it: every seat holder is licensed until "
                                  f"{_fmt(end)}. Renew the subscription before then.", start, end))
            rec = GraceRecord("active", "expired", start, end)
        else:
            out.append(Transition(rec.state, "none", rec.reason or "expired", now,
                                  _ended_sentence(terms, rec, seats_text, now), rec.started_at, rec.ends_at))
            rec = NO_GRACE

    if rec.state == "none" and why is not None:
        start, end = _window(terms, why, rec, now, lease_until)
        rec = GraceRecord("active", why, start, end)
        out.append(Transition("none", "active", why, start, _started_sentence(terms, rec, seats_text), start, end))
    elif rec.state != "none" and why is not None:
        start, end = _window(terms, why, rec, now, lease_until)
        if (start, end) != (rec.started_at, rec.ends_at):
            if rec.state == "enforced" and now < end:
                out.append(Transition("enforced", "active", why, now,
                                      f"The grace window of subscription {terms.id} now ends at {_fmt(end)} "
                                      "under the renewed terms; learners are licensed again until then.", start, end))
                rec = replace(rec, state="active")
            rec = replace(rec, started_at=start, ends_at=end)

    if rec.state == "active" and rec.ends_at is not None and now >= rec.ends_at:
        rec = replace(rec, state="enforced")
        out.append(Transition("active", "enforced", rec.reason or "expired", rec.ends_at,
                              _enforced_sentence(terms, rec, seats_text), rec.started_at, rec.ends_at))
    return rec, out


def effective(terms: Terms, record: GraceRecord, now: datetime, lease_until: datetime | None = None) -> GraceRecord:
    """The record as of ``now`` from the clock and terms alone (no seat count): for read paths.

    An access decision or a status read must reflect expiry and the end of a window at once,
    not at the next sync cycle; seat-count changes still wait for the cycle that counts them.
    """
    return evaluate(terms, None, record, now, lease_until)[0]


def days_left(record: GraceRecord, now: datetime) -> int | None:
    """Whole days left in an active window (rounded up), 0 when enforced, None without grace."""
    if record.state == "enforced":
        return 0
    if record.state != "active" or record.ends_at is None:
        return None
    return max(0, math.ceil((record.ends_at - now) / _DAY))


def _started_sentence(terms: Terms, rec: GraceRecord, seats_text: str) -> str:
    days = f"{terms.grace_days} day{'s' if terms.grace_days != 1 else ''}"
    if rec.reason == "lease_expired":
        return (f"The activation lease of subscription {terms.id} ran out at {_fmt(rec.started_at)} without a "
                f"renewal (the vendor's activation authority was not reached). Grace started: learners keep "
                f"working for {days}, until {_fmt(rec.ends_at)}; restore the connection to the authority before "
                "then or no learner will be licensed.")
    if rec.reason == "expired":
        return (f"Subscription {terms.id} ({terms.customer}) expired at {_fmt(rec.started_at)}. Grace started: "
                f"learners keep working for {days}, until {_fmt(rec.ends_at)}; renew the subscription before then "
                "or no learner will be licensed.")
    return (f"The seat maximum of subscription {terms.id} is reached ({seats_text} seats in use). Grace started: "
            f"learners keep working for {days}, until {_fmt(rec.ends_at)}; free seats or add seats before then, "
            "or the seats acquired last beyond the maximum will no longer be licensed.")


def _ended_sentence(terms: Terms, rec: GraceRecord, seats_text: str, now: datetime) -> str:
    if not terms.started(now):
        return f"Grace ended: the active terms of subscription {terms.id} start at {_fmt(terms.starts_at)}."
    if rec.reason == "lease_expired":
        return (f"Grace ended: the activation lease of subscription {terms.id} was renewed; every seat holder "
                "is licensed.")
    if rec.reason == "expired":
        return (f"Grace ended: subscription {terms.id} was renewed and is valid until {_fmt(terms.ends_at)}; "
                "every seat holder is licensed.")
    if terms.overage not in SEAT_LIMIT_GRACE_MODES:
        return f"Seat-limit grace ended: subscription {terms.id} now uses overage mode {terms.overage!r}."
    return (f"Seat-limit grace ended: {seats_text} seats are in use, below the maximum again; "
            "every seat holder is licensed.")


def _enforced_sentence(terms: Terms, rec: GraceRecord, seats_text: str) -> str:
    if rec.reason == "lease_expired":
        return (f"Grace ended at {_fmt(rec.ends_at)} without a lease renewal: no learner is licensed under "
                f"subscription {terms.id} until the activation authority renews its lease.")
    if rec.reason == "expired":
        return (f"Grace ended at {_fmt(rec.ends_at)} without a renewal: subscription {terms.id} expired at "
                f"{_fmt(rec.started_at)} and no learner is licensed until it is renewed.")
    return (f"Grace ended at {_fmt(rec.ends_at)} with {seats_text} seats in use: the seats acquired after the "
            f"first {terms.seats} are not licensed until seats are freed or added.")
