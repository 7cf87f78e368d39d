"""The ``live_enrollment`` adapter on SQLite and PostgreSQL: expiry, reuses, the sync CSV, tiers, upgrades, orgs."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from licsync import ledger, reseat
from licsync.catalogs.csv_import import HEADER
from licsync.config import Settings
from licsync.db import session_scope
from licsync.db.models import Enrollment
from licsync.seat_models import live_store, org_store, overage_store
from licsync.seat_models.models import for_tenant
from licsync.service import approve_hold, import_enrollments, sync_users
from tests.seat_models.conftest import (
    NOW,
    TENANT,
    activate,
    add_users,
    audit_actions,
    enrollment_row,
    make_settings,
    open_seats,
    released,
    write_rows,
)


def model_status(s: Any, settings: Any, now: datetime) -> dict[str, Any]:
    terms, model = for_tenant(s, TENANT)
    return model.status_block(s, settings, TENANT, terms, now)


def imp(engine: Engine, settings: Settings, path: Path, now: object = NOW, replace: bool = False) -> None:
    with session_scope(engine) as s:
        import_enrollments(s, settings, TENANT, path, replace=replace, now=now)  # type: ignore[arg-type]


def cycle(engine: Engine, settings: Settings, now: object) -> None:
    """What a sync cycle does for the seats (incremental: nobody changed in the directory)."""
    with session_scope(engine) as s:
        reseat.reseat(s, settings, TENANT, [], now)  # type: ignore[arg-type]


def enrollments(engine: Engine) -> int:
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(Enrollment.__table__)).scalar_one()  # type: ignore[attr-defined]


def test_expiring_every_enrollment_frees_the_seat_and_keeps_the_records(
    engine: Engine, vendor: tuple[bytes, str], tmp_path: Path
) -> None:
    settings = make_settings()
    activate(engine, vendor, policy="live_enrollment", seats=10, overage="tiered")
    add_users(engine, ["u1", "u2", "u3"])
    f = write_rows(tmp_path / "e.csv", HEADER, [
        enrollment_row("u1"), enrollment_row("u2", expires="2026-03-10T00:00:00Z"),
        enrollment_row("u2", "c2", expires="2026-03-05T00:00:00Z"),
        enrollment_row("u3", expires="2026-02-01T00:00:00Z")])
    imp(engine, settings, f)
    assert open_seats(engine) == {"u1": "enrollment_live", "u2": "enrollment_live"}  # u3 expired already
    cycle(engine, settings, NOW + timedelta(days=5))  # 7 March: c2 expired, c1 still live
    assert set(open_seats(engine)) == {"u1", "u2"}
    cycle(engine, settings, NOW + timedelta(days=9))  # 11 March: every enrollment of u2 expired
    assert open_seats(engine) == {"u1": "enrollment_live"}
    assert released(engine) == {"u2": "all_enrollments_expired"}
    assert enrollments(engine) == 4  # completion records kept
    # A new expiry date in the future makes u2 active again — the same user: no reuse.
    g = write_rows(tmp_path / "g.csv", HEADER, [enrollment_row("u2", expires="2026-12-01T00:00:00Z")])
    imp(engine, settings, g, NOW + timedelta(days=10))
    cycle(engine, settings, NOW + timedelta(days=10))  # see test_a_changed_expiry_is_replanned_by_the_import
    assert open_seats(engine) == {"u1": "enrollment_live", "u2": "enrollment_live"}
    with session_scope(engine) as s:
        terms = for_tenant(s, TENANT)[0]
        assert terms is not None
        assert live_store.reuse_figures(s, TENANT, terms, terms.seats, NOW + timedelta(days=400)).as_dict() == {
            "reuse_limit": 3, "unique_users": 2, "reuses": 0, "allowance": 30, "left": 30, "beyond_limit": 0,
            "exceeded": False}
    # Applying the same inputs twice changes nothing the second time.
    before = audit_actions(engine)
    cycle(engine, settings, NOW + timedelta(days=10))
    assert [a for a in audit_actions(engine)[len(before):] if a.startswith("seat_")] == []


def test_a_changed_expiry_is_replanned_by_the_import(engine: Engine, vendor: tuple[bytes, str], tmp_path: Path
                                                     ) -> None:
    settings = make_settings()
    activate(engine, vendor, policy="live_enrollment", seats=10, overage="tiered")
    add_users(engine, ["u1"])
    imp(engine, settings, write_rows(tmp_path / "e.csv", HEADER, [enrollment_row("u1")]))
    imp(engine, settings, write_rows(tmp_path / "x.csv", HEADER, [enrollment_row("u1", expires="2026-03-01")]))
    assert open_seats(engine) == {}  # set an expiry date before now: the user becomes inactive at once


@pytest.mark.parametrize(("overage", "outcome"), [("block", "refused"), ("tiered", "flagged")])
def test_reuses_beyond_the_limit_are_refused_or_flagged(
    engine: Engine, vendor: tuple[bytes, str], tmp_path: Path, overage: str, outcome: str
) -> None:
    settings = make_settings()
    activate(engine, vendor, policy="live_enrollment", seats=1, overage=overage, reuse_limit=1)
    add_users(engine, ["a", "b", "c"])
    imp(engine, settings, write_rows(tmp_path / "1.csv", HEADER, [enrollment_row("a", expires="2026-03-05")]))
    imp(engine, settings, write_rows(tmp_path / "2.csv", HEADER, [enrollment_row("b", expires="2026-03-09")]),
        NOW + timedelta(days=4))  # a expired on 5 March: b reuses the seat
    assert open_seats(engine) == {"b": "enrollment_live"}
    imp(engine, settings, write_rows(tmp_path / "3.csv", HEADER, [enrollment_row("c")]), NOW + timedelta(days=8))
    seats = open_seats(engine)
    if outcome == "refused":
        assert seats == {} and "seat_refused" in audit_actions(engine)
    else:
        assert seats == {"c": "reuse_limit_exceeded"}
    with session_scope(engine) as s:
        terms = for_tenant(s, TENANT)[0]
        assert terms is not None
        r = live_store.reuse_figures(s, TENANT, terms, terms.seats, NOW + timedelta(days=400))
        assert (r.reuses, r.allowance, r.beyond_limit > 0) == (
            (1, 1, False) if outcome == "refused" else (2, 1, True))


def test_the_sync_csv_deletes_absent_users_behind_the_mass_free_guard(
    engine: Engine, vendor: tuple[bytes, str], tmp_path: Path
) -> None:
    settings = make_settings(mass_free_threshold=1)
    activate(engine, vendor, policy="live_enrollment", seats=10, overage="tiered")
    add_users(engine, ["u1", "u2", "u3"])
    imp(engine, settings, write_rows(tmp_path / "e.csv", HEADER, [enrollment_row(u) for u in ("u1", "u2", "u3")]))
    users = write_rows(tmp_path / "users.csv", live_store.USERS_HEADER, [["u1", "u1@contoso.com"], ["zz", ""]])
    with session_scope(engine) as s:
        preview = sync_users(s, settings, TENANT, users, apply=False, now=NOW)
    assert (preview.deleted, preview.unknown, preview.enrollments_removed) == (["u2", "u3"], 1, 2)
    assert enrollments(engine) == 3 and len(open_seats(engine)) == 3  # a preview changes nothing
    with session_scope(engine) as s:
        done = sync_users(s, settings, TENANT, users, apply=True, now=NOW)
    assert enrollments(engine) == 1
    assert done.hold_id is not None and done.frees_held == 2 and len(open_seats(engine)) == 3  # held: 2 > 1
    with session_scope(engine) as s:
        assert approve_hold(s, settings, done.hold_id, NOW) == (2, 0)
    assert open_seats(engine) == {"u1": "enrollment_live"}
    assert released(engine) == {"u2": "last_enrollment_removed", "u3": "last_enrollment_removed"}


def test_an_empty_sync_file_is_refused(engine: Engine, vendor: tuple[bytes, str], tmp_path: Path) -> None:
    from licsync.errors import InputError

    users = write_rows(tmp_path / "users.csv", live_store.USERS_HEADER, [])
    with session_scope(engine) as s, pytest.raises(InputError, match="would delete every user"):
        sync_users(s, make_settings(), TENANT, users, apply=True, now=NOW)


def test_a_major_overage_upgrades_to_the_next_tier_after_24_hours(
    engine: Engine, vendor: tuple[bytes, str], tmp_path: Path
) -> None:
    settings = make_settings()
    activate(engine, vendor, policy="live_enrollment", seats=2, overage="tiered", tiers=[2, 4, 8])
    add_users(engine, ["u1", "u2", "u3"])
    imp(engine, settings, write_rows(tmp_path / "e.csv", HEADER, [enrollment_row(u) for u in ("u1", "u2", "u3")]))
    assert "overage_major" in audit_actions(engine)  # 3 of 2: 150 %
    with session_scope(engine) as s:
        terms = for_tenant(s, TENANT)[0]
        assert terms is not None
        status = model_status(s, settings, NOW + timedelta(hours=1))
        assert status["tier"]["state"] == "major" and status["upgrade"]["pending"]["to_seats"] == 4
        assert overage_store.evaluate_overage(s, settings, TENANT, NOW + timedelta(hours=23)) == []
    cycle(engine, settings, NOW + timedelta(hours=24))
    actions = audit_actions(engine)
    assert actions.count("overage_major") == 1 and actions.count("subscription_upgraded") == 1
    with session_scope(engine) as s:
        status = model_status(s, settings, NOW + timedelta(hours=25))
        assert terms is not None and ledger.purchased_seats(s, TENANT, terms) == 4
    up = status["upgrade"]
    assert (up["key_seats"], up["effective_seats"], up["upgraded"]) == (2, 4, True)
    assert up["last"]["from_seats"] == 2 and up["last"]["to_seats"] == 4 and 0.8 < up["last"]["pro_rata"] < 0.85
    assert status["tier"]["state"] == "none"
    cycle(engine, settings, NOW + timedelta(hours=48))
    assert audit_actions(engine).count("subscription_upgraded") == 1  # once


def test_a_minor_overage_is_announced_once(engine: Engine, vendor: tuple[bytes, str], tmp_path: Path) -> None:
    settings = make_settings()
    activate(engine, vendor, policy="live_enrollment", seats=20, overage="tiered", tiers=[20, 40])
    users = [f"u{i:02d}" for i in range(21)]
    add_users(engine, users)
    imp(engine, settings, write_rows(tmp_path / "e.csv", HEADER, [enrollment_row(u) for u in users]))
    cycle(engine, settings, NOW + timedelta(hours=30))
    actions = audit_actions(engine)
    assert actions.count("overage_minor") == 1 and "overage_major" not in actions
    with session_scope(engine) as s:
        block = model_status(s, settings, NOW + timedelta(days=15))  # 11 business days later
    assert block["tier"]["state"] == "minor" and block["tier"]["overdue"] is True
    assert block["tier"]["business_days"] == 11 and block["tier"]["usage_pct"] == 105.0


def test_the_org_report_counts_live_seat_holders_rolled_up(
    engine: Engine, vendor: tuple[bytes, str], tmp_path: Path
) -> None:
    settings = make_settings()
    activate(engine, vendor, policy="live_enrollment", seats=10, overage="tiered")
    add_users(engine, ["a", "b", "c", "d"])
    imp(engine, settings, write_rows(tmp_path / "e.csv", HEADER, [
        enrollment_row("a", catalog="sales"), enrollment_row("b", "c2", catalog="emea"),
        enrollment_row("a", "c2", catalog="emea"), enrollment_row("c", "c3", catalog="ops"),
        enrollment_row("d", "c3", catalog="ops", expires="2026-02-01")]))
    orgs = write_rows(tmp_path / "orgs.csv", ("org_id", "org_name", "parent_id", "user_limit", "catalog_id"), [
        ["acme", "Acme", "", "10", ""], ["sales", "Sales", "acme", "3", "sales"],
        ["emea", "EMEA", "sales", "1", "emea"], ["ops", "Ops", "acme", "", "ops"]])
    with session_scope(engine) as s:
        r = org_store.import_orgs(s, TENANT, orgs, NOW)
    assert (r.orgs, r.catalogs, r.removed) == (4, 3, 0)
    with session_scope(engine) as s:
        rows = [(x.name, x.user_limit, x.used, x.remaining, x.percentage_used)
                for x in org_store.org_report(s, TENANT, NOW)]
    assert rows == [("Acme", 10, 3, 7, 30.0), ("Ops", 0, 1, -1, None), ("Sales", 3, 2, 1, 66.7),
                    ("EMEA", 1, 2, -1, 200.0)]
