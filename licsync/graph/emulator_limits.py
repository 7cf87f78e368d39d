"""Real-tenant behaviour of the emulator, off unless a tenant is given a :class:`Realism` profile.

Unit tests run against an emulator that answers in microseconds and never throttles; benchmarks
and the scale tests switch on what a real tenant does (``GRAPH_NOTES.md``, "Real tenants at scale"):

* latency per request, per endpoint, with jitter (a real page costs 200–350 ms);
* delta pages of at most 200 users whatever ``Prefer: odata.maxpagesize`` asks;
* resource units per app and tenant over a sliding 10 s window (3,500 / 5,000 / 8,000 by tenant
  size), with ``x-ms-resource-unit`` on every answer, ``x-ms-throttle-limit-percentage`` once usage
  passes 80%, and 429 + ``Retry-After`` when the budget is spent;
* ``signInActivity`` reads at 10 requests a minute per app and tenant;
* a 410 that carries a ``Location`` header (a sync reset).

Windows run on the real monotonic clock: the client really waits out a ``Retry-After``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Resource units a request costs (concepts/throttling-limits.md): a delta page 1, a list of users
# 2 (1 with $select), the rest 1.
COSTS = {
    "delta": 1,
    "users": 2,
    "users_select": 1,
    "count": 1,
    "user": 1,
    "deletedItems": 1,
    "signIn": 1,
    "sendMail": 1,
}
WINDOW_SECONDS = 10.0
WARN_PERCENT = 80  # from here on, answers carry x-ms-throttle-limit-percentage
DELTA_PAGE_CAP = 200


def budget_for(users: int) -> int:
    """Resource units per 10 s for a tenant of this size (<50, 50–500, >500 users)."""
    return 3_500 if users < 50 else 5_000 if users <= 500 else 8_000


@dataclass
class Realism:
    """What a real tenant does, as knobs. ``latency`` maps an endpoint (``delta``, ``users``,
    ``count``, ``user``, ``deletedItems``, ``signIn``, ``sendMail``) to seconds; ``default_latency``
    covers the rest; each wait is drawn uniformly within ±``jitter`` of it."""

    latency: dict[str, float] = field(default_factory=dict)
    default_latency: float = 0.0
    jitter: float = 0.2
    delta_page_cap: int = DELTA_PAGE_CAP
    budget: int | None = None  # resource units per window; None: by tenant size
    window: float = WINDOW_SECONDS
    sign_in_per_minute: int = 10
    sign_in_window: float = 60.0
    seed: int | None = None

    @classmethod
    def graph(cls, page_latency: float = 0.25, **overrides: Any) -> Realism:
        """The profile of a real tenant: every Graph request takes about ``page_latency`` seconds."""
        return cls(default_latency=page_latency, **overrides)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Realism:
        """From the control API's JSON (``configure realism={...}``); unknown keys are refused."""
        known = set(cls.__dataclass_fields__)
        unknown = set(doc) - known
        if unknown:
            raise TypeError(f"unknown realism settings {sorted(unknown)}")
        return cls(**doc)


class Meter:
    """The resource-unit and sign-in windows of one tenant, per app. Thread-safe."""

    def __init__(self, realism: Realism, users: Callable[[], int]) -> None:
        self.realism = realism
        self._users = users
        self._lock = threading.Lock()
        self._spent: dict[str, deque[tuple[float, int]]] = {}
        self._sign_ins: dict[str, deque[float]] = {}
        self._rng = random.Random(realism.seed)

    def latency(self, endpoint: str) -> float:
        r = self.realism
        base = r.latency.get(endpoint, r.default_latency)
        if base <= 0:
            return 0.0
        with self._lock:
            return max(0.0, base * (1 + self._rng.uniform(-r.jitter, r.jitter)))

    def budget(self) -> int:
        return self.realism.budget if self.realism.budget is not None else budget_for(self._users())

    def charge(self, app: str, endpoint: str, cost: int) -> tuple[float | None, dict[str, str]]:
        """Spend ``cost`` units of ``app``'s window: (None, headers) when granted, or
        (seconds to wait, headers) when the budget is spent (nothing is charged then)."""
        now = time.monotonic()
        budget = self.budget()
        with self._lock:
            spent = self._spent.setdefault(app, deque())
            while spent and spent[0][0] <= now - self.realism.window:
                spent.popleft()
            used = sum(c for _t, c in spent)
            if endpoint == "signIn":
                calls = self._sign_ins.setdefault(app, deque())
                while calls and calls[0] <= now - self.realism.sign_in_window:
                    calls.popleft()
                if len(calls) >= self.realism.sign_in_per_minute:
                    wait = calls[0] + self.realism.sign_in_window - now
                    return max(wait, 0.001), {"x-ms-resource-unit": str(cost)}
            if used + cost > budget:
                # The window frees up as its oldest charges age out.
                freed, wait = 0, self.realism.window
                for at, c in spent:
                    freed += c
                    if used - freed + cost <= budget:
                        wait = at + self.realism.window - now
                        break
                return max(wait, 0.001), {"x-ms-resource-unit": str(cost), "x-ms-throttle-limit-percentage": "100"}
            spent.append((now, cost))
            if endpoint == "signIn":
                self._sign_ins[app].append(now)
            used += cost
        headers = {"x-ms-resource-unit": str(cost)}
        percent = 100 * used / budget
        if percent >= WARN_PERCENT:
            headers["x-ms-throttle-limit-percentage"] = f"{percent:.1f}"
        return None, headers
