"""The seat forecast, pure: its rules by table, and a backtest on synthetic histories.

Backtest: 200 histories per scenario, 120 days of daily figures for 1,000 seats, growth of
0.3–3 seats a day, the true run-out 20–150 days ahead. The truth is the first day the noiseless
series reaches the seats; the error is |forecast − truth| in days. Stated bounds (measured:
``python -m pytest tests/test_forecast.py -s`` prints them):

* ``trend`` (linear growth): at most 2 days off.
* ``noise`` (linear growth, Gaussian noise of 1 % of the level): median ≤ 3 days, 90th
  percentile ≤ 12 days, and the range holds the truth in ≥ 90 % of the histories.
* ``seasonal`` (quarterly term-start jumps carry 40 % of the growth, 0.5 % noise): median ≤ 25
  days, 90th percentile ≤ 70 days — a trend cannot know which term's jump crosses the line, so
  the error is of the order of a term's length.
"""

from __future__ import annotations

import math
import random
from datetime import date, timedelta

import pytest

from licsync import forecast as fc
from licsync.api.charts import FORECAST_DAYS_SHOWN, usage_chart

TODAY = date(2026, 12, 1)


def _linear(days: int, start: int, per_day: float) -> list[tuple[date, int]]:
    return [(TODAY - timedelta(days=days - 1 - i), round(start + per_day * i)) for i in range(days)]


@pytest.mark.parametrize("history, seats, consumed, reason, runs_out", [
    (_linear(13, 50, 1), 100, 62, "not_enough_history", None),
    (_linear(14, 50, 1), 100, 63, None, TODAY + timedelta(days=37)),
    (_linear(60, 80, 0), 100, 80, "not_growing", None),
    (_linear(60, 90, -0.2), 100, 78, "not_growing", None),
    (_linear(60, 10, 1), 50, 50, None, TODAY),  # already at the seats
    (_linear(60, 10, 1), 0, 50, "no_subscription", None),
    (_linear(60, 10, 0.01), 10_000, 11, None, TODAY + timedelta(days=fc.HORIZON_DAYS)),  # capped
])
def test_forecast_rules(history: list[tuple[date, int]], seats: int, consumed: int, reason: str | None,
                        runs_out: date | None) -> None:
    f = fc.forecast(history, seats, consumed, TODAY)
    assert (f.reason, f.runs_out_on) == (reason, runs_out)
    assert f.method == "theil_sen_90d"
    if runs_out is not None:
        assert f.range is not None and f.range[0] <= runs_out <= f.range[1]
    j = f.as_json("contoso")
    assert set(j) >= {"tenant", "seats", "consumed", "runs_out_on", "range", "method", "history_days", "reason"}


def test_only_the_last_90_days_count_and_outliers_barely_move_it() -> None:
    old = [(TODAY - timedelta(days=200 + i), 900) for i in range(50)]  # ancient history: ignored
    hist = _linear(90, 100, 2)
    assert fc.forecast(old + hist, 1000, 278, TODAY).history_days == 90
    spiked = [(d, c + (400 if i % 15 == 0 else 0)) for i, (d, c) in enumerate(hist)]  # a few bad days
    plain, noisy = fc.forecast(hist, 1000, 278, TODAY), fc.forecast(spiked, 1000, 278, TODAY)
    assert plain.runs_out_on is not None and noisy.runs_out_on is not None
    assert abs((plain.runs_out_on - noisy.runs_out_on).days) <= 2


def _history(kind: str, seed: int) -> tuple[list[tuple[date, int]], date]:
    r = random.Random(seed)
    slope, ahead, seats = r.uniform(0.3, 3.0), r.uniform(20, 150), 1000
    period, phase = 91, r.randint(0, 90)
    base = seats - slope * ahead
    seasonal = kind == "seasonal"
    noise = {"trend": 0.0, "noise": 0.01, "seasonal": 0.005}[kind]

    def value(t: int) -> float:
        if not seasonal:
            return base + slope * t
        return base + 0.6 * slope * t + 0.4 * slope * period * math.floor((t + phase) / period)

    hist = []
    for t in range(-119, 1):
        v = value(t)
        hist.append((TODAY + timedelta(days=t), max(0, round(v + (r.gauss(0, noise * v) if noise else 0)))))
    t = 0
    while value(t) < seats:
        t += 1
    return hist, TODAY + timedelta(days=t)


@pytest.mark.parametrize("kind, median_max, p90_max, worst_max, coverage_min", [
    ("trend", 2, 2, 2, 0.9),
    ("noise", 3, 12, None, 0.9),
    ("seasonal", 25, 70, None, None),
])
def test_backtest_on_synthetic_histories(kind: str, median_max: int, p90_max: int, worst_max: int | None,
                                         coverage_min: float | None) -> None:
    errors, covered = [], 0
    for seed in range(200):
        hist, truth = _history(kind, seed)
        f = fc.forecast(hist, 1000, hist[-1][1], TODAY)
        assert f.runs_out_on is not None and f.range is not None, f.reason
        errors.append(abs((f.runs_out_on - truth).days))
        covered += f.range[0] <= truth <= f.range[1]
    errors.sort()
    median, p90, coverage = errors[len(errors) // 2], errors[int(len(errors) * 0.9)], covered / len(errors)
    print(f"\nbacktest {kind}: error in days median {median}, p90 {p90}, max {errors[-1]}; range coverage "
          f"{coverage:.0%}")
    assert median <= median_max and p90 <= p90_max
    if worst_max is not None:
        assert errors[-1] <= worst_max
    if coverage_min is not None:
        assert coverage >= coverage_min


def test_the_dashboard_chart_draws_the_forecast_line_and_its_range() -> None:
    hist = [{"day": (TODAY - timedelta(days=29 - i)).isoformat(), "purchased": 100, "consumed": 50 + i}
            for i in range(30)]
    f = fc.forecast([(date.fromisoformat(h["day"]), h["consumed"]) for h in hist], 100, 79, TODAY).as_json("c")
    chart = usage_chart(hist, forecast=f)
    assert chart is not None and chart.forecast and chart.forecast_band
    (x0, y0), (x1, y1) = (tuple(map(float, p.split(","))) for p in chart.forecast.split())
    assert x0 < x1 <= chart.right and y1 < y0  # forward in time, up to the seats
    assert f["runs_out_on"] in chart.forecast_label
    assert usage_chart(hist, forecast={**f, "runs_out_on": None, "range": None}).forecast == ""  # type: ignore[union-attr]
    far = {**f, "runs_out_on": "2031-01-01", "range": ["2030-01-01", "2032-01-01"]}
    assert usage_chart(hist, forecast=far).x_labels[-1][1] == "…"  # type: ignore[union-attr]
    assert FORECAST_DAYS_SHOWN == 120
