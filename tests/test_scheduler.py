"""``next_run`` by a table: when the next delta cycle and full resync are due, with backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from licsync.scheduler import MAX_BACKOFF, QUARANTINE_AFTER, NextRun, backoff_for, next_run

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)
H = timedelta(hours=1)
SYNC, FULL = 15 * M, 24 * H

# (case, state kwargs, now, expected delta_at, expected full_at, due, quarantined)
CASES = [
    ("never synced: full at once", {}, T0, T0, T0, "full", False),
    ("never synced, server said retry later", {"not_before": T0 + 5 * M}, T0, T0 + 5 * M, T0 + 5 * M, None, False),
    ("healthy, delta not yet due",
     {"last_attempt_at": T0, "last_success_at": T0, "last_full_at": T0}, T0 + 5 * M, T0 + SYNC, T0 + FULL, None, False),
    ("healthy, delta due",
     {"last_attempt_at": T0, "last_success_at": T0, "last_full_at": T0}, T0 + SYNC, T0 + SYNC, T0 + FULL, "delta",
     False),
    ("healthy, full due wins over delta",
     {"last_attempt_at": T0 + FULL - SYNC, "last_success_at": T0 + FULL - SYNC, "last_full_at": T0}, T0 + FULL,
     T0 + FULL, T0 + FULL, "full", False),
    ("successes but never a full resync: full at once",
     {"last_attempt_at": T0, "last_success_at": T0}, T0 + M, T0 + SYNC, T0 + M, "full", False),
    ("1 failure keeps the cadence",
     {"last_attempt_at": T0, "last_success_at": T0 - SYNC, "last_full_at": T0 - H, "consecutive_failures": 1},
     T0 + M, T0 + SYNC, T0 + FULL - H, None, False),
    ("2 failures double it",
     {"last_attempt_at": T0, "last_success_at": T0 - H, "last_full_at": T0 - H, "consecutive_failures": 2},
     T0 + M, T0 + 2 * SYNC, T0 + FULL - H, None, False),
    ("4 failures: ×8",
     {"last_attempt_at": T0, "last_full_at": T0 - 2 * H, "consecutive_failures": 4},
     T0 + 2 * H, T0 + 8 * SYNC, T0 + FULL - 2 * H, "delta", False),
    ("failing: an overdue full waits for the backoff gate",
     {"last_attempt_at": T0, "last_full_at": T0 - 2 * FULL, "consecutive_failures": 3},
     T0 + 30 * M, T0 + 4 * SYNC, T0 + 4 * SYNC, None, False),
    (f"{QUARANTINE_AFTER} failures: quarantined",
     {"last_attempt_at": T0, "last_full_at": T0, "consecutive_failures": QUARANTINE_AFTER},
     T0 + M, T0 + SYNC * 2 ** (QUARANTINE_AFTER - 1), T0 + FULL, None, True),
    ("many failures: capped at once a day",
     {"last_attempt_at": T0, "last_full_at": T0, "consecutive_failures": 40},
     T0 + M, T0 + MAX_BACKOFF, T0 + MAX_BACKOFF, None, True),
    ("capped retry is due a day later",
     {"last_attempt_at": T0, "last_full_at": T0 - H, "consecutive_failures": 40},
     T0 + MAX_BACKOFF, T0 + MAX_BACKOFF, T0 + MAX_BACKOFF, "full", True),
    ("Retry-After pushes later, never earlier",
     {"last_attempt_at": T0, "last_success_at": T0, "last_full_at": T0, "not_before": T0 + 20 * M},
     T0 + 16 * M, T0 + 20 * M, T0 + FULL, None, False),
    ("Retry-After in the past changes nothing",
     {"last_attempt_at": T0, "last_success_at": T0, "last_full_at": T0, "not_before": T0 - H},
     T0 + 16 * M, T0 + SYNC, T0 + FULL, "delta", False),
    ("success after failures resets (failures 0 again)",
     {"last_attempt_at": T0, "last_success_at": T0, "last_full_at": T0 - H, "consecutive_failures": 0},
     T0 + M, T0 + SYNC, T0 + FULL - H, None, False),
]


@pytest.mark.parametrize(("case", "state", "now", "delta_at", "full_at", "due", "quarantined"), CASES,
                         ids=[c[0] for c in CASES])
def test_next_run(case: str, state: dict, now: datetime, delta_at: datetime, full_at: datetime, due: str | None,
                  quarantined: bool) -> None:
    nr = next_run(now=now, sync_interval=SYNC, full_resync_interval=FULL, **state)
    assert (nr.delta_at, nr.full_at) == (delta_at, full_at), case
    assert nr.due(now) == due
    assert nr.quarantined is quarantined


@pytest.mark.parametrize(("failures", "expected"), [
    (0, timedelta(0)), (1, SYNC), (2, 2 * SYNC), (3, 4 * SYNC), (7, 64 * SYNC), (8, MAX_BACKOFF), (500, MAX_BACKOFF),
])
def test_backoff_doubles_up_to_a_day(failures: int, expected: timedelta) -> None:
    assert backoff_for(failures, SYNC) == expected


def test_next_run_is_pure_and_at_is_the_earlier() -> None:
    kwargs = {"now": T0, "sync_interval": SYNC, "full_resync_interval": FULL, "last_attempt_at": T0,
              "last_success_at": T0, "last_full_at": T0 - FULL + M}
    first = next_run(**kwargs)  # type: ignore[arg-type]
    assert first == next_run(**kwargs)  # type: ignore[arg-type]
    assert first.at == T0 + M
    assert NextRun(T0, T0 + H).due(T0 - M) is None
