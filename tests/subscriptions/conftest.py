"""Shared fixtures for subscription tests: one vendor key pair per session, a terms factory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from licsync.subscriptions import keys


def at(text: str) -> datetime:
    """An aware UTC instant from ISO text (tests read better with literal instants)."""
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.fixture(scope="session")
def vendor() -> tuple[bytes, str]:
    return keys.generate_keypair()


@pytest.fixture(scope="session")
def other_vendor() -> tuple[bytes, str]:
    return keys.generate_keypair()


@pytest.fixture
def make_terms() -> Callable[..., keys.Terms]:
    def make(**over: Any) -> keys.Terms:
        base: dict[str, Any] = {
            "id": "SUB-001", "customer": "Contoso Ltd", "seats": 100,
            "starts_at": at("2026-01-01T00:00:00Z"), "ends_at": at("2027-01-01T00:00:00Z"),
            "issued_at": at("2025-12-15T10:00:00Z"),
        }
        return keys.Terms(**(base | over))

    return make
