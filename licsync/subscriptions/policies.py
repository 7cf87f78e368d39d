"""The names of the counting policies a subscription key may carry. Pure.

The seat-model registry (``licsync.seat_models.base.register``) adds a name here when it registers
a model, so the key's validation (``licsync.subscriptions.terms``) accepts exactly the policies
that have a model. The four built-in names are known before any model module is imported, so a
vendor's ``subscription issue`` never depends on import order.
"""

from __future__ import annotations

_BUILT_IN = ("enrollment", "live_enrollment", "first_access", "role")
_NAMES: list[str] = list(_BUILT_IN)


def add(name: str) -> None:
    if name not in _NAMES:
        _NAMES.append(name)


def remove(name: str) -> None:
    """Forget a policy a model registered (a test's own model); the built-in four stay."""
    if name in _NAMES and name not in _BUILT_IN:
        _NAMES.remove(name)


def policies() -> tuple[str, ...]:
    return tuple(_NAMES)
