"""What the fault suite did, for its closing summary: faults injected by kind, kills survived, inputs
fuzzed, and anything lost or duplicated (which a passing run keeps at zero: the tests assert it)."""

from __future__ import annotations

from collections import Counter

FAULTS: Counter[str] = Counter()
KILLS: Counter[str] = Counter()
FUZZED: Counter[str] = Counter()
LOST: Counter[str] = Counter()
DUPLICATED: Counter[str] = Counter()


def fault(kind: str, n: int = 1) -> None:
    FAULTS[kind] += n


def fuzzed(kind: str, n: int = 1) -> None:
    FUZZED[kind] += n


def summary() -> list[str]:
    def fmt(c: Counter[str]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"

    return [
        f"faults injected ({sum(FAULTS.values())}): {fmt(FAULTS)}",
        f"kills survived ({sum(KILLS.values())}): {fmt(KILLS)}",
        f"inputs fuzzed ({sum(FUZZED.values())}): {fmt(FUZZED)}",
        f"lost: {sum(LOST.values())}, duplicated: {sum(DUPLICATED.values())}",
    ]
