"""Grace rules decided in SPEC §2: a move ends the window, a return starts afresh, and
``[seats] grace_days`` may shorten the key's window but never lengthen it. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from licsync import ledger, reseat, service, status
from licsync.db import session_scope
from licsync.seats import Plan, Reason, SeatChange
from licsync.subscriptions import keys
from tests.seat_models.conftest import make_settings
from tests.subscriptions.conftest import at

EXPIRED = at("2026-02-01T00:00:00Z")  # the key ends 2026-01-31: expiry grace starts here


def _key(vendor: tuple[bytes, str], grace_days: int = 14) -> str:
    return keys.issue(vendor[0], keys.Terms(
        id="SUB-G", customer="Contoso", seats=10, starts_at=at("2025-02-01T00:00:00Z"), ends_at=EXPIRED,
        issued_at=at("2025-01-15T00:00:00Z"), grace_days=grace_days))


def _settings(vendor: tuple[bytes, str], **seats: Any) -> Any:
    base = make_settings(**seats)
    other = base.tenant[0].model_copy(update={"name": "fabrikam"})
    return base.model_copy(update={"tenant": [*base.tenant, other],
                                   "vendor": base.vendor.model_copy(update={"public_key": vendor[1]})})


def test_a_move_ends_the_window_and_a_return_starts_afresh(engine: Engine, vendor: tuple[bytes, str]) -> None:
    settings = _settings(vendor)
    key = keys.issue(vendor[0], keys.Terms(
        id="SUB-L", customer="Contoso", seats=2, starts_at=at("2026-01-01T00:00:00Z"),
        ends_at=at("2027-01-01T00:00:00Z"), issued_at=at("2025-12-15T00:00:00Z")))
    t1, t2, t3 = at("2026-03-01T09:00:00Z"), at("2026-03-05T09:00:00Z"), at("2026-03-09T09:00:00Z")
    full = Plan(takes=(SeatChange("u1", "take", Reason.ENROLLED), SeatChange("u2", "take", Reason.ENROLLED)))
    with session_scope(engine) as s:
        service.activate(s, settings, "contoso", key, t1 - timedelta(days=1))
        ledger.apply_plan(s, "contoso", full, t1)
        reseat.after_change(s, settings, "contoso", t1)  # 2 of 2: seat-limit grace from t1
        assert status.grace_view(s, "contoso", t1)["started_at"] == "2026-03-01T09:00:00Z"
    with session_scope(engine) as s:  # moved to fabrikam: contoso's window is over
        service.activate(s, settings, "fabrikam", key, t2)
        assert status.grace_view(s, "contoso", t2)["state"] == "none"
    with session_scope(engine) as s:  # back: still 2 of 2, and the window starts now, not at t1
        service.activate(s, settings, "contoso", key, t3)
        g = status.grace_view(s, "contoso", t3)
    assert (g["state"], g["reason"], g["started_at"]) == ("active", "seat_limit", "2026-03-09T09:00:00Z")
    assert g["ends_at"] == "2026-03-23T09:00:00Z"


def test_configured_grace_days_shorten_but_never_lengthen(engine: Engine, vendor: tuple[bytes, str]) -> None:
    with session_scope(engine) as s:
        service.activate(s, _settings(vendor, grace_days=5), "contoso", _key(vendor, 14), EXPIRED - timedelta(days=1))
        reseat.after_change(s, _settings(vendor, grace_days=5), "contoso", EXPIRED + timedelta(hours=1))
        g = status.grace_view(s, "contoso", EXPIRED + timedelta(hours=1))
        access = service.access_decision(s, "contoso", "nobody", EXPIRED + timedelta(days=6))
    assert g["ends_at"] == "2026-02-06T00:00:00Z"  # 5 days, not the key's 14
    assert access["reason"] == "no_seat"  # evaluated with the same window: no stale 14-day answer
    with session_scope(engine) as s:
        reseat.after_change(s, _settings(vendor, grace_days=30), "contoso", EXPIRED + timedelta(hours=2))
        g = status.grace_view(s, "contoso", EXPIRED + timedelta(hours=2))
    assert g["ends_at"] == "2026-02-15T00:00:00Z"  # 30 configured: the key's 14 stand
