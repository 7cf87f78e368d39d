"""Overage tiers of the ``tiered`` overage mode (LXP, SPEC §1, seed 001), and the automatic upgrade. Pure.

An overage *episode* starts when consumed first exceeds the seats and ends when it no longer does.
During an episode, at ``now``:

* **major** when consumed is above 105 % of the seats (``consumed × 100 > seats × 105``), or when
  the episode has lasted more than 20 business days (``now > add(since, 20)``);
* **minor** otherwise (above 100 %, at most 105 %, for at most 20 business days). The seed gives
  the customer 10 business days from the minor notice to lower the count: after
  ``add(since, 10)`` the minor overage is ``overdue`` (shown, not a tier of its own).

SPEC says "above 105 %"; the seed's prose says "more than 106 %" for major and "100 – 105 %" for
minor — licsync follows SPEC, so 105 % < usage ≤ 106 % is major. Business days come from
``licsync.seat_models.business_days`` (weekend and configured holidays).

Notices: each tier is announced once per episode (``overage_minor``, ``overage_major``); a
minor overage that grows into a major one gets both. A major overage still present 24 hours after
its notice upgrades the subscription to the next seat tier of its ladder (``extras.tiers``: the
smallest tier above the current seats), pro rata for the rest of the license year:
``pro_rata = (ends_at − effective_at) / (ends_at − starts_at)``. After an upgrade the overage is
measured against the new seats: if it persists, a new episode starts at once (and may notify and
upgrade again). With no higher tier on the ladder, or once the year is over, nothing is upgraded
and ``upgrade_unavailable`` is announced once per episode.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from licsync.seat_models.business_days import BusinessCalendar

MINOR_MAX_PCT = 105
MINOR_REMEDY_DAYS = 10  # business days to lower the count after a minor notice
MAJOR_AFTER_DAYS = 20  # a minor overage lasting more than this many business days is major
UPGRADE_AFTER = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class TierState:
    """What is stored between evaluations (one row per tenant and subscription)."""

    since: datetime | None = None  # the episode's start; None: no overage
    minor_notice_at: datetime | None = None
    major_notice_at: datetime | None = None
    no_upgrade_at: datetime | None = None  # announced that no upgrade is possible (this episode)


NO_OVERAGE = TierState()


@dataclass(frozen=True, slots=True)
class TierView:
    """The overage as of ``now``: what status shows."""

    tier: str  # none | minor | major
    why: str | None  # above_105_pct | minor_over_20_business_days | within_105_pct | None
    consumed: int
    seats: int
    since: datetime | None = None
    business_days: int = 0
    remedy_by: datetime | None = None  # minor: lower the count by then (since + 10 business days)
    major_at: datetime | None = None  # minor: becomes major after this instant (since + 20 business days)
    overdue: bool = False

    @property
    def usage_pct(self) -> float | None:
        return None if self.seats <= 0 else round(100.0 * self.consumed / self.seats, 1)


@dataclass(frozen=True, slots=True)
class Upgrade:
    from_seats: int
    to_seats: int
    due_at: datetime  # the major notice + 24 h
    effective_at: datetime
    pro_rata: float  # the fraction of the license year left at effective_at
    days_left: int


@dataclass(frozen=True, slots=True)
class TierEvent:
    """Something to record and announce: ``overage_minor`` | ``overage_major`` | ``overage_ended``
    | ``subscription_upgraded`` | ``upgrade_unavailable``."""

    kind: str
    at: datetime
    since: datetime | None
    consumed: int
    seats: int
    upgrade_at: datetime | None = None
    upgrade: Upgrade | None = None


def view(consumed: int, seats: int, since: datetime | None, now: datetime, cal: BusinessCalendar) -> TierView:
    """Classify the overage at ``now`` for an episode that started at ``since``."""
    if consumed <= seats:
        return TierView("none", None, consumed, seats)
    since = since or now
    days = cal.elapsed(since, now)
    remedy_by = cal.add(since, MINOR_REMEDY_DAYS)
    major_at = cal.add(since, MAJOR_AFTER_DAYS)
    if consumed * 100 > seats * MINOR_MAX_PCT:
        return TierView("major", "above_105_pct", consumed, seats, since, days)
    if now > major_at:
        return TierView("major", "minor_over_20_business_days", consumed, seats, since, days)
    return TierView("minor", "within_105_pct", consumed, seats, since, days, remedy_by, major_at, now > remedy_by)


def next_tier(ladder: tuple[int, ...] | list[int], seats: int) -> int | None:
    """The smallest seat tier of the ladder above ``seats``, or None."""
    higher = [t for t in ladder if t > seats]
    return min(higher) if higher else None


def pro_rata(starts_at: datetime, ends_at: datetime, at: datetime) -> tuple[float, int]:
    """The fraction of the license year left at ``at`` (0..1, 4 decimals) and the whole days left."""
    total = (ends_at - starts_at).total_seconds()
    left = max(0.0, min(total, (ends_at - at).total_seconds()))
    return (round(left / total, 4) if total > 0 else 0.0), int(left // 86400)


def step(
    state: TierState,
    *,
    consumed: int,
    seats: int,
    ladder: tuple[int, ...] | list[int],
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
    cal: BusinessCalendar,
) -> tuple[TierState, tuple[TierEvent, ...], int]:
    """One evaluation: the new state, the events to record and announce, and the seats after it."""
    events: list[TierEvent] = []
    for _ in range(len(ladder) + 2):  # each round either settles or upgrades one rung
        if consumed <= seats:
            if state.since is not None:
                events.append(TierEvent("overage_ended", now, state.since, consumed, seats))
            return NO_OVERAGE, tuple(events), seats
        if state.since is None:
            state = TierState(since=now)
        v = view(consumed, seats, state.since, now, cal)
        if v.tier == "minor" and state.minor_notice_at is None and state.major_notice_at is None:
            state = replace(state, minor_notice_at=now)
            events.append(TierEvent("overage_minor", now, state.since, consumed, seats))
        if v.tier != "major":
            return state, tuple(events), seats
        if state.major_notice_at is None:
            state = replace(state, major_notice_at=now)
            events.append(TierEvent("overage_major", now, state.since, consumed, seats, now + UPGRADE_AFTER))
            return state, tuple(events), seats
        due = state.major_notice_at + UPGRADE_AFTER
        if now < due:
            return state, tuple(events), seats
        target = next_tier(ladder, seats)
        if target is None or now >= ends_at:
            if state.no_upgrade_at is None:
                state = replace(state, no_upgrade_at=now)
                events.append(TierEvent("upgrade_unavailable", now, state.since, consumed, seats, due))
            return state, tuple(events), seats
        fraction, days_left = pro_rata(starts_at, ends_at, now)
        up = Upgrade(seats, target, due, now, fraction, days_left)
        events.append(TierEvent("subscription_upgraded", now, state.since, consumed, seats, due, up))
        seats, state = target, NO_OVERAGE
    return state, tuple(events), seats
