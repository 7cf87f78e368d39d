"""When will consumed reach the seats at the present trend? Pure: a daily history in, a forecast out.

Method (``theil_sen_90d``): the Theil–Sen line over the last ``WINDOW_DAYS`` days of the daily
ledger — the slope is the median of the slopes between every pair of days, the level the median
residual — so a few odd days (an import that was rolled back, a term-start jump) move it little,
unlike least squares. The run-out date is when the line reaches the seats; the range comes from
Sen's 90 % confidence interval of the slope (the order statistics of the pairwise slopes picked
with the normal approximation of Kendall's S), the steeper slope giving the early end.

Rules, and why:

* Fewer than ``MIN_HISTORY_DAYS`` days with figures in the window: ``not_enough_history`` — a
  trend from a week of data is a guess, and a wrong early warning teaches admins to ignore it.
* A slope under ``MIN_SLOPE`` seats a day (about one seat a year) is ``not_growing``: no date.
* Already at or over the seats: the run-out date is today (the grace mails take over).
* Dates beyond ``HORIZON_DAYS`` are reported as that horizon: nobody plans seats on a 2-year trend.

Backtested in ``tests/test_forecast.py`` on synthetic histories (trend, term-start steps, noise).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import median
from typing import Any

METHOD = "theil_sen_90d"
WINDOW_DAYS = 90
MIN_HISTORY_DAYS = 14
MIN_SLOPE = 1 / 365
HORIZON_DAYS = 730
MIN_PAIR_GAP_DAYS = 60  # only pairs this far apart vote: a term-start jump inside the window counts
_Z90 = 1.6449  # two-sided 90 %


@dataclass(frozen=True)
class Forecast:
    seats: int
    consumed: int
    runs_out_on: date | None
    range: tuple[date, date] | None
    method: str
    history_days: int
    reason: str | None  # None | not_enough_history | not_growing | no_subscription
    slope_per_day: float | None = None

    def as_json(self, tenant: str) -> dict[str, Any]:
        """SPEC §5's shape (plus ``slope_per_day``)."""
        return {"tenant": tenant, "seats": self.seats, "consumed": self.consumed,
                "runs_out_on": None if self.runs_out_on is None else self.runs_out_on.isoformat(),
                "range": None if self.range is None else [d.isoformat() for d in self.range],
                "method": self.method, "history_days": self.history_days, "reason": self.reason,
                "slope_per_day": None if self.slope_per_day is None else round(self.slope_per_day, 4)}


def theil_sen(points: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """(slope, intercept, low slope, high slope) with Sen's 90 % interval. Needs two distinct x."""
    span = points[-1][0] - points[0][0]
    gap = min(MIN_PAIR_GAP_DAYS, span * 2 / 3)
    slopes = sorted((y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1:]
                    if x2 - x1 >= gap and x2 != x1)
    slope = median(slopes)
    intercept = median(y - slope * x for x, y in points)
    n, big_n = len(points), len(slopes)
    c = _Z90 * math.sqrt(n * (n - 1) * (2 * n + 5) / 18)
    lo = max(0, min(big_n - 1, math.floor((big_n - c) / 2)))
    hi = max(0, min(big_n - 1, math.ceil((big_n + c) / 2)))
    return slope, intercept, slopes[lo], slopes[hi]


def _day_reaching(level: float, slope: float, seats: int, today: date) -> date:
    if slope <= 0:
        return today + timedelta(days=HORIZON_DAYS)
    days = max(0.0, (seats - level) / slope)
    return today + timedelta(days=min(HORIZON_DAYS, math.ceil(days)))


def forecast(history: Iterable[tuple[date, int]], seats: int, consumed: int, today: date) -> Forecast:
    """The forecast as of ``today`` from ``(day, consumed)`` figures (one per day; later wins)."""
    window_start = today - timedelta(days=WINDOW_DAYS)
    by_day = {d: c for d, c in history if window_start < d <= today}
    days = len(by_day)

    def out(runs: date | None, rng: tuple[date, date] | None, reason: str | None,
            slope: float | None = None) -> Forecast:
        return Forecast(seats, consumed, runs, rng, METHOD, days, reason, slope)

    if seats <= 0:
        return out(None, None, "no_subscription")
    if consumed >= seats:
        return out(today, (today, today), None)
    if days < MIN_HISTORY_DAYS:
        return out(None, None, "not_enough_history")
    points = [(float((d - today).days), float(c)) for d, c in sorted(by_day.items())]
    slope, intercept, low, high = theil_sen(points)
    if slope < MIN_SLOPE:
        return out(None, None, "not_growing", slope)
    level = max(intercept, 0.0)  # the line's value today (x = 0)
    runs = _day_reaching(level, slope, seats, today)
    early = _day_reaching(level, max(high, slope), seats, today)
    late = _day_reaching(level, min(low, slope), seats, today)
    return out(runs, (early, late), None, slope)


def within(f: Forecast, today: date, days: int) -> bool:
    """Whether the forecast date falls within ``days`` of ``today`` (what the forecast mail announces)."""
    return f.runs_out_on is not None and (f.runs_out_on - today).days <= days
