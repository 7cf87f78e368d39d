"""Business days: a weekend and a holiday calendar, for the overage tiers of ``live_enrollment``. Pure.

Rules, and why:

* Days are calendar days in the tenant's time zone (``[[tenant]] timezone``, IANA, default UTC);
  instants stay UTC. Saturday and Sunday are the weekend; ``holidays`` are whole local days given
  by configuration (``[[tenant]] holidays``, and ``[seats] holidays`` for every tenant).
* ``add(start, n)`` is the instant ``n`` business days after ``start``: the same time of day on the
  ``n``-th business day after ``start``'s day. A ``start`` that falls on a weekend or a holiday
  counts from 00:00 (local) of the next business day (an overage that begins on a Saturday has used no
  business time by Monday morning).
* An overage "lasts at most ``n`` business days" while ``now <= add(start, n)``, and lasts more
  than ``n`` from the first instant after it. ``elapsed`` is the number of whole business days
  that have passed (the largest ``n`` with ``add(start, n) <= now``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

WEEKEND = frozenset({5, 6})  # Saturday, Sunday (date.weekday())
_DAY = timedelta(days=1)
_MAX_SCAN = 3660  # ten years of calendar days: a calendar with no business day is an error, not a hang


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    holidays: frozenset[date] = field(default_factory=frozenset)
    weekend: frozenset[int] = WEEKEND
    tz: tzinfo = UTC

    @classmethod
    def from_config(cls, holidays: Iterable[str | date] | None, tz: tzinfo = UTC) -> BusinessCalendar:
        """From ``["2026-12-25", …]``; a value that is not a date raises ValueError naming it."""
        days: set[date] = set()
        for h in holidays or ():
            if isinstance(h, datetime):
                days.add(h.date())
            elif isinstance(h, date):
                days.add(h)
            else:
                try:
                    days.add(date.fromisoformat(str(h).strip()))
                except ValueError:
                    raise ValueError(f"holiday {h!r} is not a date (use YYYY-MM-DD)") from None
        return cls(frozenset(days), WEEKEND, tz)

    def is_business_day(self, d: date) -> bool:
        return d.weekday() not in self.weekend and d not in self.holidays

    def next_business_day(self, d: date) -> date:
        """The first business day strictly after ``d``."""
        for _ in range(_MAX_SCAN):
            d += _DAY
            if self.is_business_day(d):
                return d
        raise ValueError("the business calendar has no business day within ten years")

    def start_of(self, dt: datetime) -> datetime:
        """``dt`` itself on a (local) business day, else local 00:00 of the next business day."""
        local = dt.astimezone(self.tz)
        if self.is_business_day(local.date()):
            return dt.astimezone(UTC)
        return datetime.combine(self.next_business_day(local.date()), time(0), self.tz).astimezone(UTC)

    def add(self, start: datetime, n: int) -> datetime:
        """The instant ``n`` business days after ``start`` (see the module doc)."""
        if n < 0:
            raise ValueError("n must be ≥ 0")
        s = self.start_of(start).astimezone(self.tz)
        d = s.date()
        for _ in range(n):
            d = self.next_business_day(d)
        return datetime.combine(d, s.time(), self.tz).astimezone(UTC)

    def elapsed(self, start: datetime, now: datetime) -> int:
        """Whole business days passed since ``start`` as of ``now`` (0 before the first)."""
        s = self.start_of(start)
        if now <= s:
            return 0
        n = 0
        local = s.astimezone(self.tz)
        d = local.date()
        end = now.astimezone(self.tz)
        for _ in range((end.date() - d).days + 1):
            d = self.next_business_day(d)
            if datetime.combine(d, local.time(), self.tz) > end:
                break
            n += 1
        return n
