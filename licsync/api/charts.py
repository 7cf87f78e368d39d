"""Geometry for the dashboard's inline SVG: the usage bar and seat usage over time.

Server-side on purpose: the page needs no JavaScript (the CSP allows none inline, and a status page
must work in any browser an admin has), and SVG attributes are not styles, so ``default-src 'self'``
holds without ``'unsafe-inline'``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

AMBER_AT = 80.0  # percent of purchased seats
RED_AT = 100.0
FORECAST_DAYS_SHOWN = 120  # the chart looks this far ahead at most


@dataclass(frozen=True)
class Usage:
    pct: float | None  # None without purchased seats
    width: float  # 0..100, the filled part of the bar
    level: str  # ok | warn | over

    @property
    def label(self) -> str:
        return "no seats purchased" if self.pct is None else f"{self.pct:.0f}% used"


def usage(consumed: int, purchased: int) -> Usage:
    if purchased <= 0:
        return Usage(None, 100.0 if consumed else 0.0, "over" if consumed else "ok")
    pct = 100.0 * consumed / purchased
    level = "over" if pct >= RED_AT else "warn" if pct >= AMBER_AT else "ok"
    return Usage(round(pct, 1), round(min(pct, 100.0), 2), level)


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    consumed: str  # polyline points
    purchased: str
    y_ticks: list[tuple[float, int]]  # (y, value)
    x_labels: list[tuple[float, str]]  # (x, day)
    dots: list[tuple[float, float, str]]  # (x, y, tooltip)
    left: int
    right: int
    top: int
    bottom: int
    forecast: str = ""  # polyline: today's consumed → the seats on the run-out day
    forecast_band: str = ""  # polygon: the range of the run-out day
    forecast_label: str = ""


def _ahead(forecast: dict[str, Any] | None, last_day: str) -> tuple[int, int, int] | None:
    """Days from the last snapshot to the run-out day and to both ends of its range (capped)."""
    if not forecast or not forecast.get("runs_out_on") or not forecast.get("range"):
        return None
    last = date.fromisoformat(last_day)
    days = [min(FORECAST_DAYS_SHOWN, max(0, (date.fromisoformat(d) - last).days))
            for d in (forecast["runs_out_on"], *forecast["range"])]
    return days[0], days[1], days[2]


def usage_chart(history: list[dict[str, Any]], width: int = 720, height: int = 220,
                forecast: dict[str, Any] | None = None) -> Chart | None:
    """Consumed and purchased seats per day (oldest first), or None with no history; with a
    ``forecast`` (``licsync.status.forecast_for``), its line to the seats and its range."""
    if not history:
        return None
    left, right, top, bottom = 48, width - 12, 12, height - 28
    top_value = max(max(int(h["consumed"]), int(h["purchased"])) for h in history)
    top_value = max(1, int(top_value * 1.1 + 0.999))
    n = len(history)
    ahead = _ahead(forecast, history[-1]["day"])
    slots = n - 1 + (max(ahead) if ahead else 0)

    def x(i: int) -> float:
        return (left + right) / 2 if slots == 0 else left + i * (right - left) / slots

    def y(v: int) -> float:
        return bottom - (bottom - top) * v / top_value

    consumed = [(x(i), y(int(h["consumed"]))) for i, h in enumerate(history)]
    purchased = [(x(i), y(int(h["purchased"]))) for i, h in enumerate(history)]
    pts = lambda ps: " ".join(f"{a:.1f},{b:.1f}" for a, b in ps)  # noqa: E731
    ticks = [(y(v), v) for v in sorted({0, top_value // 2, top_value})]
    labels = [(x(0), history[0]["day"])]
    if n > 1:
        labels.append((x(n - 1), history[-1]["day"]))
    dots = [(a, b, f'{h["day"]}: {h["consumed"]} of {h["purchased"]}')
            for (a, b), h in zip(consumed, history, strict=True)] if n <= 62 else []
    chart = Chart(width, height, pts(consumed), pts(purchased), ticks, labels, dots, left, right, top, bottom)
    if ahead is None or forecast is None:
        return chart
    seats, (x0, y0) = int(forecast["seats"]), consumed[-1]
    at, early, late = (n - 1 + d for d in ahead)
    line = pts([(x0, y0), (x(at), y(seats))])
    band = pts([(x0, y0), (x(early), y(seats)), (x(late), y(seats))])
    label = f"forecast: seats run out {forecast['runs_out_on']} ({forecast['range'][0]} to {forecast['range'][1]})"
    labels.append((x(slots), forecast["range"][1] if ahead[2] < FORECAST_DAYS_SHOWN else "…"))
    return Chart(width, height, chart.consumed, chart.purchased, ticks, labels, dots, left, right, top, bottom,
                 line, band, label)
