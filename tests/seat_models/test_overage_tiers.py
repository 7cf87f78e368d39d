"""Business days and the overage tiers of the ``tiered`` mode (seed 001): every boundary, both sides.

Calendar of the holiday rows: Friday 25 December 2026 and Friday 1 January 2027 are holidays.
Thursday 17 December 2026 10:00 + 10 business days = Monday 4 January 2027 10:00 (a weekend and two
holidays skipped); + 20 = Monday 18 January 2027 10:00. Without holidays: Thursday 31 December and
Thursday 14 January.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from licsync.seat_models import overage as tiers
from licsync.seat_models.business_days import BusinessCalendar
from tests.seat_models.conftest import at

PLAIN = BusinessCalendar()
HOLIDAYS = BusinessCalendar.from_config(["2026-12-25", "2027-01-01"])
SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("rule", "cal", "start", "n", "expected"),
    [
        ("a weekday is one business day later", PLAIN, "2026-12-17T10:00Z", 1, "2026-12-18T10:00Z"),
        ("Friday + 1 crosses the weekend", PLAIN, "2026-12-18T10:00Z", 1, "2026-12-21T10:00Z"),
        ("a holiday and a weekend are skipped", HOLIDAYS, "2026-12-24T10:00Z", 1, "2026-12-28T10:00Z"),
        ("10 business days without holidays", PLAIN, "2026-12-17T10:00Z", 10, "2026-12-31T10:00Z"),
        ("10 business days across two holidays", HOLIDAYS, "2026-12-17T10:00Z", 10, "2027-01-04T10:00Z"),
        ("20 business days without holidays", PLAIN, "2026-12-17T10:00Z", 20, "2027-01-14T10:00Z"),
        ("20 business days across two holidays", HOLIDAYS, "2026-12-17T10:00Z", 20, "2027-01-18T10:00Z"),
        ("a Saturday start counts from Monday 00:00", PLAIN, "2026-12-19T10:00Z", 1, "2026-12-22T00:00Z"),
        ("a holiday start counts from the next business day", HOLIDAYS, "2026-12-25T10:00Z", 0,
         "2026-12-28T00:00Z"),
        ("zero days is the start itself", PLAIN, "2026-12-17T10:00Z", 0, "2026-12-17T10:00Z"),
    ],
)
def test_adding_business_days(rule: str, cal: BusinessCalendar, start: str, n: int, expected: str) -> None:
    assert cal.add(at(start), n) == at(expected), rule


@pytest.mark.parametrize(
    ("cal", "now", "elapsed"),
    [
        (HOLIDAYS, "2027-01-04T09:59:59Z", 9),
        (HOLIDAYS, "2027-01-04T10:00:00Z", 10),
        (HOLIDAYS, "2026-12-26T12:00:00Z", 5),  # the holiday and the weekend add nothing
        (PLAIN, "2026-12-26T12:00:00Z", 6),
        (PLAIN, "2026-12-17T09:00:00Z", 0),  # before the start
    ],
)
def test_elapsed_business_days(cal: BusinessCalendar, now: str, elapsed: int) -> None:
    assert cal.elapsed(at("2026-12-17T10:00Z"), at(now)) == elapsed


def test_a_bad_holiday_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'25/12/2026' is not a date"):
        BusinessCalendar.from_config(["25/12/2026"])


SINCE = at("2026-12-17T10:00Z")

# (rule, consumed, seats, now, calendar, tier, why, overdue)
TIERS = [
    ("at 100 % there is no overage", 100, 100, SINCE, HOLIDAYS, "none", None, False),
    ("above 100 % is minor", 101, 100, SINCE, HOLIDAYS, "minor", "within_105_pct", False),
    ("exactly 105 % is still minor", 105, 100, SINCE, HOLIDAYS, "minor", "within_105_pct", False),
    ("above 105 % is major at once", 106, 100, SINCE, HOLIDAYS, "major", "above_105_pct", False),
    ("21 of 20 (105 %) is minor", 21, 20, SINCE, HOLIDAYS, "minor", "within_105_pct", False),
    ("22 of 20 (110 %) is major", 22, 20, SINCE, HOLIDAYS, "major", "above_105_pct", False),
    ("any use of 0 seats is major", 1, 0, SINCE, HOLIDAYS, "major", "above_105_pct", False),
    ("10 business days exactly: minor, in time", 101, 100, at("2027-01-04T10:00Z"), HOLIDAYS, "minor",
     "within_105_pct", False),
    ("just after 10 business days: minor, overdue", 101, 100, at("2027-01-04T10:00Z") + SECOND, HOLIDAYS,
     "minor", "within_105_pct", True),
    ("across the weekend and holidays, day 9 is not overdue", 101, 100, at("2027-01-03T23:00Z"), HOLIDAYS,
     "minor", "within_105_pct", False),
    ("without the holidays the same instant is overdue", 101, 100, at("2027-01-03T23:00Z"), PLAIN, "minor",
     "within_105_pct", True),
    ("20 business days exactly: still minor", 101, 100, at("2027-01-18T10:00Z"), HOLIDAYS, "minor",
     "within_105_pct", True),
    ("just after 20 business days: major", 101, 100, at("2027-01-18T10:00Z") + SECOND, HOLIDAYS, "major",
     "minor_over_20_business_days", False),
    ("the weekend before day 20 adds nothing", 101, 100, at("2027-01-17T23:59Z"), HOLIDAYS, "minor",
     "within_105_pct", True),
    ("without holidays day 20 is Thursday 14 January", 101, 100, at("2027-01-14T10:00Z") + SECOND, PLAIN,
     "major", "minor_over_20_business_days", False),
    ("with them that instant is still minor", 101, 100, at("2027-01-14T10:00Z") + SECOND, HOLIDAYS, "minor",
     "within_105_pct", True),
]


@pytest.mark.parametrize(("rule", "consumed", "seats", "now", "cal", "tier", "why", "overdue"), TIERS,
                         ids=[t[0] for t in TIERS])
def test_tier_boundaries(rule: str, consumed: int, seats: int, now: object, cal: BusinessCalendar, tier: str,
                         why: str | None, overdue: bool) -> None:
    v = tiers.view(consumed, seats, SINCE, now, cal)  # type: ignore[arg-type]
    assert (v.tier, v.why, v.overdue) == (tier, why, overdue)


def test_an_overage_starting_on_a_saturday_counts_from_monday() -> None:
    since = at("2026-12-19T10:00Z")  # Saturday
    edge = at("2027-01-04T00:00Z")  # Monday 21 Dec 00:00 + 10 business days (no holidays)
    assert not tiers.view(101, 100, since, edge, PLAIN).overdue
    assert tiers.view(101, 100, since, edge + SECOND, PLAIN).overdue


def _step(state: tiers.TierState, consumed: int, seats: int, now: object, ladder: tuple[int, ...] = (100, 200, 500)
          ) -> tuple[tiers.TierState, tuple[tiers.TierEvent, ...], int]:
    return tiers.step(state, consumed=consumed, seats=seats, ladder=ladder, starts_at=at("2026-01-01T00:00Z"),
                      ends_at=at("2027-01-01T00:00Z"), now=now, cal=HOLIDAYS)  # type: ignore[arg-type]


def kinds(events: tuple[tiers.TierEvent, ...]) -> list[str]:
    return [e.kind for e in events]


def test_each_tier_notifies_once_and_a_major_overage_upgrades_after_24_hours() -> None:
    t0 = at("2026-07-01T00:00Z")
    s, ev, seats = _step(tiers.NO_OVERAGE, 101, 100, t0)
    assert kinds(ev) == ["overage_minor"] and s.since == t0 and seats == 100
    s, ev, _ = _step(s, 102, 100, t0 + timedelta(hours=1))
    assert kinds(ev) == []  # still minor: announced once per episode
    t1 = t0 + timedelta(hours=2)
    s, ev, _ = _step(s, 110, 100, t1)
    assert kinds(ev) == ["overage_major"] and ev[0].upgrade_at == t1 + timedelta(hours=24)
    s, ev, seats = _step(s, 110, 100, t1 + timedelta(hours=24) - SECOND)
    assert kinds(ev) == [] and seats == 100  # not yet 24 hours after the notice
    s, ev, seats = _step(s, 110, 100, t1 + timedelta(hours=24))
    assert kinds(ev) == ["subscription_upgraded"] and seats == 200 and s == tiers.NO_OVERAGE
    up = ev[0].upgrade
    assert up is not None and (up.from_seats, up.to_seats, up.due_at) == (100, 200, t1 + timedelta(hours=24))
    assert up.pro_rata == pytest.approx((182 + 22 / 24) / 365, abs=1e-4) and up.days_left == 182


def test_a_major_overage_that_went_away_is_not_upgraded() -> None:
    t0 = at("2026-07-01T00:00Z")
    s, _ev, _ = _step(tiers.NO_OVERAGE, 110, 100, t0)
    s, ev, seats = _step(s, 100, 100, t0 + timedelta(hours=25))
    assert kinds(ev) == ["overage_ended"] and seats == 100 and s == tiers.NO_OVERAGE


def test_a_major_overage_that_shrank_to_minor_within_20_days_is_not_upgraded() -> None:
    t0 = at("2026-07-01T00:00Z")
    s, ev, _ = _step(tiers.NO_OVERAGE, 110, 100, t0)
    assert kinds(ev) == ["overage_major"]
    s, ev, seats = _step(s, 103, 100, t0 + timedelta(hours=30))
    assert kinds(ev) == [] and seats == 100  # minor now; no second minor notice after a major one


def test_a_minor_overage_lasting_more_than_20_business_days_becomes_major_then_upgrades() -> None:
    since = at("2026-06-01T10:00Z")  # Monday; + 20 business days = Monday 29 June 10:00
    s, ev, _ = _step(tiers.NO_OVERAGE, 101, 100, since)
    assert kinds(ev) == ["overage_minor"]
    s, ev, _ = _step(s, 101, 100, at("2026-06-29T10:00Z"))
    assert kinds(ev) == []  # exactly 20 business days: still minor
    major_at = at("2026-06-29T10:00Z") + SECOND
    s, ev, _ = _step(s, 101, 100, major_at)
    assert kinds(ev) == ["overage_major"] and s.major_notice_at == major_at
    s, ev, seats = _step(s, 101, 100, major_at + timedelta(hours=24))
    assert kinds(ev) == ["subscription_upgraded"] and seats == 200


def test_still_over_after_an_upgrade_starts_a_new_episode() -> None:
    t0 = at("2026-07-01T00:00Z")
    s, _ev, _ = _step(tiers.NO_OVERAGE, 110, 100, t0, ladder=(100, 104))
    s, ev, seats = _step(s, 110, 100, t0 + timedelta(days=1), ladder=(100, 104))
    assert kinds(ev) == ["subscription_upgraded", "overage_major"] and seats == 104
    assert s.since == t0 + timedelta(days=1)


def test_no_higher_tier_is_announced_once() -> None:
    t0 = at("2026-07-01T00:00Z")
    s, _ev, _ = _step(tiers.NO_OVERAGE, 110, 100, t0, ladder=(50, 100))
    s, ev, seats = _step(s, 110, 100, t0 + timedelta(days=1), ladder=(50, 100))
    assert kinds(ev) == ["upgrade_unavailable"] and seats == 100
    s, ev, _ = _step(s, 110, 100, t0 + timedelta(days=2), ladder=(50, 100))
    assert kinds(ev) == []


@pytest.mark.parametrize(("ladder", "seats", "expected"), [((1000, 2000, 5000), 1000, 2000),
                                                           ((1000, 2000, 5000), 1500, 2000),
                                                           ((1000, 2000), 2000, None), ((), 10, None)])
def test_next_tier_of_the_ladder(ladder: tuple[int, ...], seats: int, expected: int | None) -> None:
    assert tiers.next_tier(ladder, seats) == expected


def test_pro_rata_is_the_rest_of_the_license_year() -> None:
    start, end = at("2026-01-01T00:00Z"), at("2027-01-01T00:00Z")
    assert tiers.pro_rata(start, end, start) == (1.0, 365)
    assert tiers.pro_rata(start, end, at("2026-07-02T12:00Z")) == (round(182.5 / 365, 4), 182)
    assert tiers.pro_rata(start, end, end) == (0.0, 0)


def test_holidays_and_inactive_days_come_from_the_settings() -> None:
    from licsync.seat_models.overage_store import calendar
    from licsync.seat_models.role_store import inactive_days
    from tests.seat_models.conftest import make_settings

    assert calendar(make_settings()) == PLAIN and inactive_days(make_settings()) == 90
    configured = make_settings().model_copy(update={"seats": make_settings().seats.model_copy(
        update={"holidays": [date(2026, 12, 25), date(2027, 1, 1)], "inactive_days": 30})})
    assert calendar(configured) == HOLIDAYS and inactive_days(configured) == 30


def test_business_days_are_the_tenants_own() -> None:
    """Saturday 01:00 in Auckland is Friday noon in UTC: not a business day there (SPEC §1)."""
    from zoneinfo import ZoneInfo

    from licsync.seat_models.overage_store import calendar
    from tests.seat_models.conftest import make_settings

    base = make_settings()
    nz = base.tenant[0].model_copy(update={"timezone": "Pacific/Auckland", "holidays": [date(2026, 12, 7)]})
    cal = calendar(base.model_copy(update={"tenant": [nz]}), nz.name)
    assert cal.tz == ZoneInfo("Pacific/Auckland") and date(2026, 12, 7) in cal.holidays
    friday_noon_utc = at("2026-12-04T12:00:00Z")  # Saturday 2026-12-05 01:00 NZDT
    assert not cal.is_business_day(friday_noon_utc.astimezone(cal.tz).date())
    # counts from local midnight of the next business day: Monday 7 Dec is a holiday there, so Tuesday
    assert cal.start_of(friday_noon_utc) == at("2026-12-07T11:00:00Z")  # Tue 00:00 NZDT
    assert cal.add(friday_noon_utc, 1) == at("2026-12-08T11:00:00Z")
    assert PLAIN.start_of(friday_noon_utc) == friday_noon_utc  # in UTC it is a Friday
