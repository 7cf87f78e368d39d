"""The ``first_access`` adapter on SQLite and PostgreSQL: ingest, seats, periods, duplicates, the seed's example."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from licsync import reseat, service
from licsync.db import session_scope
from licsync.db.models_seat_models import LearnerActivity
from licsync.errors import InputError
from licsync.seat_models import access_store
from licsync.seat_models.first_access import HEADER
from licsync.status import tenant_status
from tests.seat_models.conftest import (
    TENANT,
    activate,
    add_users,
    audit_actions,
    make_settings,
    open_seats,
    released,
    write_rows,
)

START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2024, 9, 1, 12, 0, tzinfo=UTC)


def row(aid: str, when: str = "2024-07-01T09:00:00Z", content: str = "harass-1", title: str = "What is Respect",
        user: str = "", first: str = "", last: str = "", email: str = "") -> list[str]:
    return [aid, user, first, last, email, content, title, when]


def rows_of(engine: Engine, model: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as c:
        return sorted(tuple(r) for r in c.execute(select(model.__table__)))


def imp(engine: Engine, path: Path, now: datetime = NOW) -> access_store.IngestResult:
    with session_scope(engine) as s:
        return service.import_activity(s, make_settings(), TENANT, path, now)


def report(engine: Engine) -> list[dict[str, Any]]:
    with session_scope(engine) as s:
        return access_store.consumption_report(s, TENANT)


def test_first_access_consumes_once_per_period_and_is_never_freed(
    engine: Engine, vendor: tuple[bytes, str], tmp_path: Path
) -> None:
    activate(engine, vendor, policy="first_access", seats=2, overage="bill", starts=START, ends=END, now=NOW)
    f = write_rows(tmp_path / "a.csv", HEADER, [
        row("s1", first="John", last="Smith", user="e-1"),
        row("s1", "2024-07-03T09:00:00Z", "c2", "Microlesson 2"),  # further content: free
        row("s2", "2024-08-01T09:00:00Z"), row("s3", "2024-08-02T09:00:00Z"),
        row("s4", "2023-12-31T23:59:59Z")])  # before the period
    r = imp(engine, f)
    assert (r.launches, r.consumed_new, r.outside_period) == (5, 3, 1)
    assert r.figures["available"] == -1 and r.figures["overage"] == 1  # may go negative (billed)
    assert open_seats(engine) == {"s1": "first_access", "s2": "first_access", "s3": "first_access"}
    assert report(engine)[0] == {"activity_id": "s1", "user_id": "e-1", "first_name": "John", "last_name": "Smith",
                                 "first_content": "What is Respect", "first_access_at": "2024-07-01T09:00:00Z",
                                 "duplicate_of": ""}
    # The same file again changes nothing; a late launch that happened earlier corrects the first content.
    before, learners = audit_actions(engine), rows_of(engine, LearnerActivity)
    imp(engine, f)
    assert [a for a in audit_actions(engine)[len(before):] if a.startswith("seat_")] == []
    assert rows_of(engine, LearnerActivity) == learners  # s1: 2 launches, counted once
    g = write_rows(tmp_path / "b.csv", HEADER, [row("s1", "2024-06-30T09:00:00Z", "intro", "Introduction")])
    assert imp(engine, g).corrected == 1
    assert report(engine)[0]["first_content"] == "Introduction" and len(report(engine)) == 3
    # A sync cycle (directory reconcile) does not free first-access seats: they are not directory seats.
    with session_scope(engine) as s:
        p = reseat.plan(s, TENANT, None, NOW).plan
        assert p.frees == () and p.takes == ()
    with session_scope(engine) as s:
        st = tenant_status(s, TENANT, NOW)
    assert (st["purchased"], st["consumed"], st["available"], st["overage"]) == (2, 3, -1, 1)


def test_a_new_license_period_releases_the_old_consumption(
    engine: Engine, vendor: tuple[bytes, str], tmp_path: Path
) -> None:
    activate(engine, vendor, policy="first_access", seats=5, overage="bill", starts=START, ends=END, now=NOW)
    imp(engine, write_rows(tmp_path / "a.csv", HEADER, [row("s1"), row("s2")]))
    renewal = datetime(2025, 1, 2, tzinfo=UTC)
    activate(engine, vendor, policy="first_access", seats=5, overage="bill", starts=END,
             ends=datetime(2026, 1, 1, tzinfo=UTC), now=renewal, issued=renewal)
    r = imp(engine, write_rows(tmp_path / "b.csv", HEADER, [row("s2", "2025-01-01T08:00:00Z")]), renewal)
    assert r.consumed_new == 1 and r.figures["consumed"] == 1
    assert open_seats(engine) == {"s2": "first_access"}
    assert released(engine) == {"s1": "license_period_ended"}
    assert [x["activity_id"] for x in report(engine)] == ["s2"]


def test_candidate_duplicates_are_listed_confirmed_and_billed_separately(
    engine: Engine, vendor: tuple[bytes, str], tmp_path: Path
) -> None:
    activate(engine, vendor, policy="first_access", seats=10, overage="bill", starts=START, ends=END, now=NOW)
    add_users(engine, ["dir-7"], mail="ann.lee@contoso.com")
    imp(engine, write_rows(tmp_path / "a.csv", HEADER, [
        row("old-1", "2024-03-01T09:00:00Z", first="Tim", last="Brown"),
        row("new-1", "2024-05-01T09:00:00Z", first="Tim", last="Brown"),  # LMS migration: same person
        row("x-1", first="Ann", last="Lee", user="dir-7"),
        row("x-2", first="A.", last="Lee", email="Ann.Lee@contoso.com"),  # same directory user, by email
        row("solo", first="Bo", last="Ek")]))
    with session_scope(engine) as s:
        listed = access_store.list_duplicates(s, TENANT)
    assert [(d["a"]["activity_id"], d["b"]["activity_id"], d["matched_on"]) for d in listed] == [
        ("new-1", "old-1", ["name"]), ("x-1", "x-2", ["directory_user"])]
    assert open_seats(engine).keys() == {"old-1", "new-1", "x-1", "x-2", "solo"}  # nothing merged
    with session_scope(engine) as s:
        access_store.decide_duplicate(s, listed[0]["id"], "confirm", NOW, actor="admin@contoso.com")
        access_store.decide_duplicate(s, listed[1]["id"], "dismiss", NOW)
    with session_scope(engine) as s:
        f = access_store.figures(s, TENANT, NOW)
        assert access_store.list_duplicates(s, TENANT) == []
        assert len(access_store.list_duplicates(s, TENANT, include_decided=True)) == 2
    assert (f["consumed"], f["confirmed_duplicates"], f["billable"], f["candidate_duplicates"]) == (5, 1, 4, 0)
    dup = {r["activity_id"]: r["duplicate_of"] for r in report(engine)}
    assert dup["new-1"] == "old-1" and dup["old-1"] == ""  # the earliest first access is the primary
    # Re-detection keeps the admin's word.
    imp(engine, write_rows(tmp_path / "b.csv", HEADER, [row("new-1", "2024-08-01T09:00:00Z", first="Tim",
                                                             last="Brown")]))
    with session_scope(engine) as s:
        assert access_store.list_duplicates(s, TENANT) == []
    assert "duplicate_confirmed" in audit_actions(engine)


def statement(aid: str, when: str, verb: str = "launched") -> dict[str, Any]:
    return {"actor": {"name": "Jo Doe", "account": {"homePage": "https://lms", "name": aid}},
            "verb": {"id": f"http://adlnet.gov/expapi/verbs/{verb}"},
            "object": {"id": "urn:content:1", "definition": {"name": {"en-US": "Intro"}}}, "timestamp": when}


def test_xapi_statements_are_ingested_like_launches(engine: Engine, vendor: tuple[bytes, str]) -> None:
    activate(engine, vendor, policy="first_access", seats=10, overage="bill", starts=START, ends=END, now=NOW)
    settings = make_settings()
    with session_scope(engine) as s:
        r = service.ingest_statements(s, settings, TENANT, [statement("x1", "2024-07-01T09:00:00Z"),
                                                            statement("x1", "2024-07-02T09:00:00Z", "experienced"),
                                                            statement("x2", "2024-07-01T10:00:00Z", "completed")],
                                      NOW)
    assert (r.received, r.launches, r.ignored, r.consumed_new) == (3, 2, 1, 1)
    assert open_seats(engine) == {"x1": "first_access"}
    with session_scope(engine) as s, pytest.raises(InputError) as err:
        service.ingest_statements(s, settings, TENANT, [statement("x3", "2024-07-01T09:00:00Z"), {"verb": "?"}],
                                  NOW)
    assert err.value.problems == ["statement 1: verb is missing"]
    assert open_seats(engine) == {"x1": "first_access"}  # the bad batch stored nothing


def test_activity_is_refused_for_another_policy(engine: Engine, vendor: tuple[bytes, str], tmp_path: Path) -> None:
    f = write_rows(tmp_path / "a.csv", HEADER, [row("s1")])
    with pytest.raises(InputError, match="no active subscription"):
        imp(engine, f)
    activate(engine, vendor, policy="enrollment", seats=10, now=NOW)
    with pytest.raises(InputError, match="counts seats by enrollment, not first_access"):
        imp(engine, f)


def test_the_seeds_worked_example_16000_purchased_18260_consumed(
    engine: Engine, vendor: tuple[bytes, str], tmp_path: Path
) -> None:
    """Seed 000: purchased 16,000, consumed 18,260, available −2,260 (an overage of 2,260)."""
    activate(engine, vendor, policy="first_access", seats=16_000, overage="bill", starts=START, ends=END, now=NOW)
    base = datetime(2024, 7, 1, tzinfo=UTC)
    rows = [row(f"scorm-{i:05d}", (base + timedelta(seconds=i)).isoformat(), first=f"F{i}", last=f"L{i}")
            for i in range(18_260)]
    r = imp(engine, write_rows(tmp_path / "big.csv", HEADER, rows))
    assert (r.figures["purchased"], r.figures["consumed"], r.figures["available"], r.figures["overage"]) == (
        16_000, 18_260, -2_260, 2_260)
    with session_scope(engine) as s:
        st = tenant_status(s, TENANT, NOW)
    assert (st["purchased"], st["consumed"], st["available"]) == (16_000, 18_260, -2_260)
