"""The grace state machine: every transition, days 0/13/14/15 for both reasons, overage modes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licsync.subscriptions.grace import NO_GRACE, GraceRecord, days_left, effective, evaluate
from licsync.subscriptions.keys import Terms

DAY = timedelta(days=1)
EXPIRY = datetime(2027, 1, 1, tzinfo=UTC)  # a key issued with --ends 2026-12-31
SEEN = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)  # when a cycle first sees the seat limit reached


def terms(**over) -> Terms:
    base = {"id": "SUB-001", "customer": "Contoso", "seats": 10, "starts_at": datetime(2026, 1, 1, tzinfo=UTC),
            "ends_at": EXPIRY, "issued_at": datetime(2025, 12, 1, tzinfo=UTC)}
    return Terms(**(base | over))


def active(reason: str, start: datetime, days: int = 14) -> GraceRecord:
    return GraceRecord("active", reason, start, start + days * DAY)


def enforced(reason: str, start: datetime, days: int = 14) -> GraceRecord:
    return GraceRecord("enforced", reason, start, start + days * DAY)


def steps(t: Terms, consumed: int, record: GraceRecord, now: datetime) -> tuple[GraceRecord, list[tuple]]:
    new, transitions = evaluate(t, consumed, record, now)
    return new, [(x.from_state, x.to_state, x.reason, x.at) for x in transitions]


# --------------------------------------------------------------------------- days 0, 13, 14, 15


@pytest.mark.parametrize(("day", "state", "left"), [(0, "active", 14), (13, "active", 1), (14, "enforced", 0),
                                                    (15, "enforced", 0)])
def test_expiry_grace_by_day_from_no_grace(day: int, state: str, left: int) -> None:
    """Evaluated for the first time on day N after expiry: the window still starts at the expiry instant."""
    now = EXPIRY + day * DAY
    new, out = steps(terms(), 3, NO_GRACE, now)
    assert new == GraceRecord(state, "expired", EXPIRY, EXPIRY + 14 * DAY)
    assert new.ends_at - new.started_at == timedelta(days=14)
    expected = [("none", "active", "expired", EXPIRY)]
    if state == "enforced":
        expected.append(("active", "enforced", "expired", EXPIRY + 14 * DAY))
    assert out == expected
    assert days_left(new, now) == left


@pytest.mark.parametrize(("day", "state", "left"), [(0, "active", 14), (13, "active", 1), (14, "enforced", 0),
                                                    (15, "enforced", 0)])
def test_seat_limit_grace_by_day_from_an_active_window(day: int, state: str, left: int) -> None:
    now = SEEN + day * DAY
    new, out = steps(terms(), 10, active("seat_limit", SEEN), now)
    assert new == GraceRecord(state, "seat_limit", SEEN, SEEN + 14 * DAY)
    assert out == ([] if day < 14 else [("active", "enforced", "seat_limit", SEEN + 14 * DAY)])
    assert days_left(new, now) == left


@pytest.mark.parametrize("reason", ["expired", "seat_limit"])
def test_daily_cycles_make_each_transition_exactly_once(reason: str) -> None:
    origin = EXPIRY if reason == "expired" else SEEN
    record, seen = NO_GRACE, {}
    for day in range(16):
        now = origin + day * DAY
        record, out = evaluate(terms(), 10, record, now)
        seen.update({(t.from_state, t.to_state): day for t in out})
        if day in (0, 13, 14, 15):
            assert record.state == ("active" if day < 14 else "enforced")
    assert seen == {("none", "active"): 0, ("active", "enforced"): 14}
    assert record == GraceRecord("enforced", reason, origin, origin + 14 * DAY)


def test_window_closes_at_the_exact_instant() -> None:
    end = SEEN + 14 * DAY
    before, _ = evaluate(terms(), 10, active("seat_limit", SEEN), end - timedelta(microseconds=1))
    assert before.state == "active" and days_left(before, end - timedelta(microseconds=1)) == 1
    after, _ = evaluate(terms(), 10, active("seat_limit", SEEN), end)
    assert after.state == "enforced"


# --------------------------------------------------------------------------- every transition


RENEWED = {"ends_at": EXPIRY + 365 * DAY, "issued_at": EXPIRY}
LATE = EXPIRY + 20 * DAY


@pytest.mark.parametrize(("name", "over", "consumed", "record", "now", "new", "moves"), [
    ("nothing to do", {}, 9, NO_GRACE, SEEN, NO_GRACE, []),
    ("limit reached at exactly seats", {}, 10, NO_GRACE, SEEN, active("seat_limit", SEEN),
     [("none", "active", "seat_limit", SEEN)]),
    ("limit exceeded", {}, 12, NO_GRACE, SEEN, active("seat_limit", SEEN), [("none", "active", "seat_limit", SEEN)]),
    ("seats freed end active grace", {}, 9, active("seat_limit", SEEN), SEEN + DAY, NO_GRACE,
     [("active", "none", "seat_limit", SEEN + DAY)]),
    ("seats freed end enforced grace", {}, 9, enforced("seat_limit", SEEN), SEEN + 20 * DAY, NO_GRACE,
     [("enforced", "none", "seat_limit", SEEN + 20 * DAY)]),
    ("seats added end grace", {"seats": 20}, 12, enforced("seat_limit", SEEN), SEEN + 20 * DAY, NO_GRACE,
     [("enforced", "none", "seat_limit", SEEN + 20 * DAY)]),
    ("more seats but still at the limit", {"seats": 12}, 12, enforced("seat_limit", SEEN), SEEN + 20 * DAY,
     enforced("seat_limit", SEEN), []),
    ("renewal ends active expiry grace", RENEWED, 3, active("expired", EXPIRY), EXPIRY + DAY, NO_GRACE,
     [("active", "none", "expired", EXPIRY + DAY)]),
    ("renewal ends enforced expiry grace", RENEWED, 3, enforced("expired", EXPIRY), LATE, NO_GRACE,
     [("enforced", "none", "expired", LATE)]),
    ("renewal at the limit swaps the reason", RENEWED, 10, active("expired", EXPIRY), LATE, active("seat_limit", LATE),
     [("active", "none", "expired", LATE), ("none", "active", "seat_limit", LATE)]),
    ("expiry takes precedence", {}, 15, NO_GRACE, EXPIRY, active("expired", EXPIRY),
     [("none", "active", "expired", EXPIRY)]),
    ("expiry replaces active seat-limit grace", {}, 10, active("seat_limit", EXPIRY - 5 * DAY), EXPIRY + DAY,
     active("expired", EXPIRY), [("active", "active", "expired", EXPIRY)]),
    ("expiry long after seat-limit grace started", {}, 10, active("seat_limit", EXPIRY - 5 * DAY), LATE,
     enforced("expired", EXPIRY),
     [("active", "active", "expired", EXPIRY), ("active", "enforced", "expired", EXPIRY + 14 * DAY)]),
    ("enforced seat limit holds during the expiry window", {}, 10, enforced("seat_limit", EXPIRY - 30 * DAY),
     EXPIRY + 13 * DAY, enforced("seat_limit", EXPIRY - 30 * DAY), []),
    ("enforced seat limit becomes enforced expiry", {}, 10, enforced("seat_limit", EXPIRY - 30 * DAY),
     EXPIRY + 14 * DAY, enforced("expired", EXPIRY), [("enforced", "enforced", "expired", EXPIRY + 14 * DAY)]),
    ("seats freed inside the expiry window", {}, 5, enforced("seat_limit", EXPIRY - 30 * DAY), EXPIRY + 3 * DAY,
     active("expired", EXPIRY), [("enforced", "active", "expired", EXPIRY)]),
    ("seats freed after the expiry window", {}, 5, enforced("seat_limit", EXPIRY - 30 * DAY), LATE,
     enforced("expired", EXPIRY), [("enforced", "enforced", "expired", EXPIRY + 14 * DAY)]),
    ("no grace before the period starts", {"starts_at": SEEN + DAY}, 50, NO_GRACE, SEEN, NO_GRACE, []),
    ("a renewal with a later start ends grace", {"starts_at": SEEN + DAY}, 50, active("seat_limit", SEEN), SEEN,
     NO_GRACE, [("active", "none", "seat_limit", SEEN)]),
    ("zero grace days enforce at once", {"grace_days": 0}, 10, NO_GRACE, SEEN, enforced("seat_limit", SEEN, 0),
     [("none", "active", "seat_limit", SEEN), ("active", "enforced", "seat_limit", SEEN)]),
    ("renewal with more grace days moves the end", {"grace_days": 30}, 10, active("seat_limit", SEEN),
     SEEN + 20 * DAY, active("seat_limit", SEEN, 30), []),
    ("renewal with more grace days reopens", {"grace_days": 30}, 10, enforced("seat_limit", SEEN), SEEN + 20 * DAY,
     active("seat_limit", SEEN, 30), [("enforced", "active", "seat_limit", SEEN + 20 * DAY)]),
    ("renewal still expired moves the window", {"ends_at": EXPIRY + 10 * DAY, "issued_at": EXPIRY}, 3,
     enforced("expired", EXPIRY), EXPIRY + 15 * DAY, active("expired", EXPIRY + 10 * DAY),
     [("enforced", "active", "expired", EXPIRY + 15 * DAY)]),
    ("stable enforced state", {}, 3, enforced("expired", EXPIRY), LATE, enforced("expired", EXPIRY), []),
])
def test_transitions(name, over, consumed, record, now, new, moves) -> None:
    got, out = steps(terms(**over), consumed, record, now)
    assert (got, out) == (new, moves), name
    if got.state != "none":
        assert got.ends_at - got.started_at == timedelta(days=terms(**over).grace_days)


@pytest.mark.parametrize(("mode", "seat_limit_grace"), [("grace", True), ("tiered", False), ("block", False),
                                                        ("bill", False)])
def test_overage_modes(mode: str, seat_limit_grace: bool) -> None:
    t = terms(overage=mode)
    got, _ = evaluate(t, 15, NO_GRACE, SEEN)
    assert got == (active("seat_limit", SEEN) if seat_limit_grace else NO_GRACE)
    expired, _ = evaluate(t, 15, NO_GRACE, EXPIRY + DAY)
    assert expired == active("expired", EXPIRY)  # every mode runs expiry grace


def test_switching_to_block_ends_seat_limit_grace() -> None:
    got, out = evaluate(terms(overage="block"), 15, active("seat_limit", SEEN), SEEN + DAY)
    assert got == NO_GRACE
    assert "overage mode 'block'" in out[0].sentence


def test_transition_kinds_actions_and_sentences() -> None:
    _, out = evaluate(terms(), 12, NO_GRACE, LATE)
    assert [(t.kind, t.action) for t in out] == [("started", "grace_started"), ("enforced", "grace_enforced")]
    assert "expired at 2027-01-01 00:00 UTC" in out[0].sentence
    assert "until 2027-01-15 00:00 UTC" in out[0].sentence
    assert "no learner is licensed" in out[1].sentence
    _, out = evaluate(terms(), 12, active("seat_limit", SEEN), SEEN + 14 * DAY)
    assert "12 of 10 seats in use" in out[0].sentence and "after the first 10" in out[0].sentence
    _, out = evaluate(terms(), 3, active("seat_limit", SEEN), SEEN + DAY)
    assert out[0].action == "grace_ended" and "3 of 10" in out[0].sentence


def test_effective_applies_the_clock_but_keeps_the_recorded_seat_cause() -> None:
    assert effective(terms(), active("seat_limit", SEEN), SEEN + DAY) == active("seat_limit", SEEN)
    assert effective(terms(), active("seat_limit", SEEN), SEEN + 15 * DAY) == enforced("seat_limit", SEEN)
    assert effective(terms(), NO_GRACE, SEEN) == NO_GRACE
    assert effective(terms(), NO_GRACE, LATE) == enforced("expired", EXPIRY)
    assert effective(terms(**RENEWED), enforced("expired", EXPIRY), LATE) == NO_GRACE


def test_days_left() -> None:
    rec = active("seat_limit", SEEN)
    assert days_left(NO_GRACE, SEEN) is None
    assert days_left(rec, SEEN) == 14
    assert days_left(rec, SEEN + timedelta(hours=1)) == 14
    assert days_left(rec, SEEN + 13 * DAY + timedelta(hours=23)) == 1
    assert days_left(rec, SEEN + 30 * DAY) == 0
    assert days_left(enforced("expired", EXPIRY), SEEN) == 0


@settings(deadline=None, max_examples=300)
@given(events=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 20), st.booleans()), min_size=1, max_size=12))
def test_invariants_over_random_histories(events) -> None:
    """Whatever happens: windows are exact, expiry windows start at expiry, re-evaluation is idempotent."""
    record, now, t = NO_GRACE, datetime(2026, 12, 1, tzinfo=UTC), terms()
    for hours_days, consumed, renew in events:
        now += timedelta(days=hours_days, hours=hours_days)
        if renew:
            t = terms(ends_at=max(t.ends_at, now) + 30 * DAY, issued_at=now)
        record, out = evaluate(t, consumed, record, now)
        again, none = evaluate(t, consumed, record, now)
        assert (again, none) == (record, [])
        for tr in out:
            assert tr.from_state != tr.to_state or tr.reason != "seat_limit"
        if record.state != "none":
            assert record.ends_at - record.started_at == timedelta(days=t.grace_days)
            assert record.state == ("enforced" if now >= record.ends_at else "active")
        if record.reason == "expired":
            assert record.started_at == t.ends_at
