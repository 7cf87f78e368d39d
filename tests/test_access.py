"""The launch-time access decision: one table per state, and the stable order at seat-limit enforcement."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import pytest

from licsync import access
from licsync.access import decide, seat_ranks
from licsync.subscriptions.grace import NO_GRACE, GraceRecord
from licsync.subscriptions.terms import Terms

DAY = timedelta(days=1)
START = datetime(2026, 1, 1, tzinfo=UTC)
EXPIRY = datetime(2027, 1, 1, tzinfo=UTC)
MID = datetime(2026, 6, 1, 12, tzinfo=UTC)
TERMS = Terms(id="SUB-001", customer="Contoso", seats=3, starts_at=START, ends_at=EXPIRY,
              issued_at=datetime(2025, 12, 1, tzinfo=UTC))
LIMIT_ACTIVE = GraceRecord("active", "seat_limit", MID - 4 * DAY, MID + 10 * DAY)
LIMIT_ENFORCED = GraceRecord("enforced", "seat_limit", MID - 20 * DAY, MID - 6 * DAY)
EXPIRY_ACTIVE = GraceRecord("active", "expired", EXPIRY, EXPIRY + 14 * DAY)
EXPIRY_ENFORCED = GraceRecord("enforced", "expired", EXPIRY, EXPIRY + 14 * DAY)
LEASE_ENFORCED = GraceRecord("enforced", "lease_expired", MID - 20 * DAY, MID - 6 * DAY)


@pytest.mark.parametrize(("state", "terms", "holds", "licensed", "reason"), [
    ("none", None, True, False, "no_subscription"),
    ("deactivated", TERMS, True, False, "no_subscription"),
    ("active", None, True, False, "no_subscription"),
    ("active", TERMS, False, False, "no_seat"),
    ("active", TERMS, True, True, "seat_held"),
])
def test_subscription_and_seat(state, terms, holds, licensed, reason) -> None:
    d = decide(holds, 1 if holds else None, NO_GRACE, terms, state, MID)
    assert (d.licensed, d.reason) == (licensed, reason)
    assert d.sentence


def test_deactivated_says_so() -> None:
    assert "deactivated" in decide(True, 1, NO_GRACE, TERMS, "deactivated", MID).sentence


def test_not_started() -> None:
    d = decide(True, 1, NO_GRACE, TERMS, "active", START - timedelta(seconds=1))
    assert (d.licensed, d.reason) == (False, "not_started")
    assert "2026-01-01 00:00 UTC" in d.sentence
    assert decide(True, 1, NO_GRACE, TERMS, "active", START).reason == "seat_held"


@pytest.mark.parametrize(("grace", "state", "now", "rank", "licensed", "reason", "words"), [
    (LIMIT_ACTIVE, "active", MID, 7, True, "grace_period", "10 days left"),
    (LIMIT_ACTIVE, "active", MID + 9 * DAY + timedelta(hours=1), 7, True, "grace_period", "1 day left"),
    (EXPIRY_ACTIVE, "expired", EXPIRY, 9, True, "grace_period", "14 days left"),
    (EXPIRY_ACTIVE, "expired", EXPIRY + 13 * DAY, 9, True, "grace_period", "the subscription expired"),
    (EXPIRY_ENFORCED, "expired", EXPIRY + 14 * DAY, 1, False, "subscription_expired", "must be renewed"),
    (EXPIRY_ENFORCED, "expired", EXPIRY + 15 * DAY, 1, False, "subscription_expired", "expired at 2027-01-01"),
    (LIMIT_ENFORCED, "active", MID, 1, True, "within_seat_limit", "among the first 3"),
    (LIMIT_ENFORCED, "active", MID, 3, True, "within_seat_limit", "position 3"),
    (LIMIT_ENFORCED, "active", MID, 4, False, "beyond_seat_limit", "your seat was acquired after the first 3"),
    (LIMIT_ENFORCED, "active", MID, 40, False, "beyond_seat_limit", "position 40"),
])
def test_grace_states(grace, state, now, rank, licensed, reason, words) -> None:
    d = decide(True, rank, grace, TERMS, state, now)
    assert (d.licensed, d.reason) == (licensed, reason)
    assert re.search(words, d.sentence), d.sentence


@pytest.mark.parametrize(("grace", "state", "now", "reason"), [
    (NO_GRACE, "expired", EXPIRY + DAY, "grace_period"),  # expiry not yet seen by a cycle: grace at once
    (NO_GRACE, "expired", EXPIRY + 14 * DAY, "subscription_expired"),  # … and enforcement at once
    (EXPIRY_ACTIVE, "expired", EXPIRY + 14 * DAY, "subscription_expired"),
    (LIMIT_ACTIVE, "active", MID + 10 * DAY, "beyond_seat_limit"),  # window closed since the last cycle
])
def test_decision_reflects_the_clock_at_once(grace, state, now, reason) -> None:
    assert decide(True, 5, grace, TERMS, state, now).reason == reason


def test_enforcement_needs_a_rank() -> None:
    with pytest.raises(ValueError, match="seat_rank"):
        decide(True, None, LIMIT_ENFORCED, TERMS, "active", MID)
    assert decide(True, None, NO_GRACE, TERMS, "active", MID).reason == "seat_held"


def test_stable_order_at_seat_limit_enforcement() -> None:
    t0 = MID - 100 * DAY
    seats = [("ann", t0, 7), ("bob", t0 + DAY, 3), ("cem", t0 + DAY, 2), ("dee", t0 + DAY, 9), ("eve", t0, 8)]
    expected = {"ann": 1, "eve": 2, "cem": 3, "bob": 4, "dee": 5}  # acquired_at, then seat id breaks ties
    for _ in range(20):
        shuffled = random.sample(seats, len(seats))
        assert seat_ranks(shuffled) == expected
    licensed = {h for h, r in expected.items() if decide(True, r, LIMIT_ENFORCED, TERMS, "active", MID).licensed}
    assert licensed == {"ann", "eve", "cem"}


def test_reason_codes_are_documented_and_snake_case() -> None:
    decided = set()
    for holds, rank, grace, terms, state, now, *first_use in [
        (True, 1, NO_GRACE, None, "none", MID), (False, None, NO_GRACE, TERMS, "active", MID),
        (True, 1, NO_GRACE, TERMS, "active", START - DAY),
        (True, 1, EXPIRY_ENFORCED, TERMS, "expired", EXPIRY + 20 * DAY),
        (True, 4, LIMIT_ENFORCED, TERMS, "active", MID), (True, 1, LIMIT_ENFORCED, TERMS, "active", MID),
        (True, 1, LIMIT_ACTIVE, TERMS, "active", MID), (True, 1, NO_GRACE, TERMS, "active", MID),
        (False, None, NO_GRACE, TERMS, "active", MID, True),
        (True, 1, LEASE_ENFORCED, TERMS, "active", MID),
    ]:
        decided.add(decide(holds, rank, grace, terms, state, now, seat_on_first_use=bool(first_use)).reason)
    assert decided == set(access.REASONS)
    for code in access.REASONS:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", code)
        assert f"``{code}``" in (access.__doc__ or "")
