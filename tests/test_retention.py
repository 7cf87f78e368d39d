"""``licsync purge``: history older than audit_days goes, the personal data of users permanently
deleted more than deleted_user_days ago is erased, their seat history stays anonymised — and
nothing else changes. Checked row by row, table by table, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync.config import Settings
from licsync.daemon import Locks, default_jobs, instance_id
from licsync.db import session_scope
from licsync.db.models import (
    AuditLog,
    DirectoryChange,
    DirectoryUser,
    Enrollment,
    LearnerListEntry,
    Seat,
    SyncCycle,
)
from licsync.db.models_seat_models import FirstAccessConsumption, LearnerActivity, SignInActivity
from licsync.retention import ERASED_PREFIX, purge
from licsync.scheduler import SyncScheduler
from tests.conftest import write_config
from tests.daemon.conftest import cli

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
T = "contoso"
TABLES = [DirectoryUser, DirectoryChange, AuditLog, SyncCycle, Seat, Enrollment, LearnerListEntry, SignInActivity,
          LearnerActivity, FirstAccessConsumption]


def _user(uid: str, deleted: str = "none", since: datetime | None = None) -> DirectoryUser:
    return DirectoryUser(tenant=T, id=uid, upn=f"{uid}@contoso.example", mail=f"{uid}@contoso.example",
                         display_name=f"Name of {uid}", deleted=deleted, deleted_since=since,
                         first_seen=NOW - 900 * DAY)


def seed(engine: Engine) -> None:
    with session_scope(engine) as s:
        s.add_all([
            _user("u-alive"),
            _user("u-gone", "hard", NOW - 31 * DAY),      # erased
            _user("u-recent", "hard", NOW - 5 * DAY),     # too recent: kept
            _user("u-holding", "hard", NOW - 60 * DAY),   # still holds a seat: kept
            _user("u-soft", "soft", NOW - 90 * DAY),      # only soft-deleted (restorable): kept
        ])
        s.add_all([
            DirectoryChange(tenant=T, cycle_id=1, user_id="u-alive", at=NOW - 401 * DAY, change="created"),  # pruned
            DirectoryChange(tenant=T, cycle_id=2, user_id="u-alive", at=NOW - 10 * DAY, change="updated"),
            DirectoryChange(tenant=T, cycle_id=2, user_id="u-gone", at=NOW - 40 * DAY, change="hard_deleted",
                            fields={"displayName": "Name of u-gone"}),                                  # erased
            DirectoryChange(tenant=T, cycle_id=2, user_id="u-recent", at=NOW - 5 * DAY, change="hard_deleted"),
        ])
        s.add_all([
            AuditLog(at=NOW - 500 * DAY, tenant=T, action="subscription_activated", subject="sub-1"),  # pruned
            AuditLog(at=NOW - 399 * DAY, tenant=T, action="subscription_renewed", subject="sub-1"),
        ])
        s.add_all([
            SyncCycle(id=1, tenant=T, kind="full", status="ok", started_at=NOW - 401 * DAY),       # pruned
            SyncCycle(id=2, tenant=T, kind="delta", status="running", started_at=NOW - 401 * DAY),  # running: kept
            SyncCycle(id=3, tenant=T, kind="delta", status="ok", started_at=NOW - DAY),
        ])
        s.add_all([
            Seat(tenant=T, holder="u-alive", acquired_at=NOW - 100 * DAY, acquire_reason="enrolled"),
            Seat(tenant=T, holder="u-gone", acquired_at=NOW - 300 * DAY, released_at=NOW - 200 * DAY,
                 acquire_reason="enrolled", release_reason="unenrolled"),
            Seat(tenant=T, holder="u-gone", acquired_at=NOW - 100 * DAY, released_at=NOW - 31 * DAY,
                 acquire_reason="enrolled", release_reason="account_hard_deleted"),
            Seat(tenant=T, holder="u-holding", acquired_at=NOW - 100 * DAY, acquire_reason="enrolled"),
        ])
        s.add_all([
            Enrollment(tenant=T, course_id="c1", user_id="u-gone", role="learner", upn="u-gone@contoso.example"),
            Enrollment(tenant=T, course_id="c1", user_id="u-alive", role="learner", upn="u-alive@contoso.example"),
            LearnerListEntry(tenant=T, catalog_id="cat", user_id="u-gone"),
            LearnerListEntry(tenant=T, catalog_id="cat", user_id="u-holding"),
            SignInActivity(tenant=T, user_id="u-gone", last_sign_in_at=NOW - 60 * DAY),
            LearnerActivity(tenant=T, activity_id="a-gone", user_id="u-gone", first_name="Gone", last_name="User",
                            email="u-gone@contoso.example", launches=3),
            LearnerActivity(tenant=T, activity_id="a-alive", user_id="u-alive", first_name="Al", email="al@x"),
            FirstAccessConsumption(tenant=T, subscription_id="sub-1", period_start=NOW - 300 * DAY,
                                   activity_id="a-gone", user_id="u-gone", content_id="course-1",
                                   first_access_at=NOW - 250 * DAY),
        ])


def snapshot(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    with Session(engine) as s:
        for model in TABLES:
            table = model.__table__  # type: ignore[attr-defined]
            rows = [dict(r._mapping) for r in s.connection().execute(select(table))]
            out[table.name] = sorted(rows, key=lambda r: json.dumps(r, default=str, sort_keys=True))
    return out


def _without(rows: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in rows if any(r.get(k) != v for k, v in match.items())]


def test_purge_erases_what_the_policy_says_and_nothing_more(engine: Engine) -> None:
    seed(engine)
    settings = Settings()  # the defaults: audit_days 400, deleted_user_days 30
    before = snapshot(engine)

    dry = purge(engine, settings, NOW, dry_run=True)
    assert snapshot(engine) == before  # a dry run changes nothing
    report = purge(engine, settings, NOW)
    assert report["counts"] == dry["counts"]
    after = snapshot(engine)

    assert after["directory_user"] == _without(before["directory_user"], id="u-gone")
    assert after["directory_change"] == [
        r for r in before["directory_change"] if r["user_id"] != "u-gone" and r["at"] >= NOW - 400 * DAY]
    assert after["audit_log"] == [r for r in before["audit_log"] if r["action"] == "subscription_renewed"]
    assert after["sync_cycle"] == [r for r in before["sync_cycle"] if r["id"] in (2, 3)]
    assert after["enrollment"] == _without(before["enrollment"], user_id="u-gone")
    assert after["learner_list"] == _without(before["learner_list"], user_id="u-gone")
    assert after["sign_in_activity"] == []
    # the seat history stays, anonymised: same rows, same times and reasons, one opaque holder per seat
    assert len(after["seat"]) == len(before["seat"])
    for old in before["seat"]:
        (new,) = [r for r in after["seat"] if r["id"] == old["id"]]
        if old["holder"] == "u-gone":
            assert new == old | {"holder": f"{ERASED_PREFIX}{old['id']}"}
        else:
            assert new == old
    gone_activity = next(r for r in after["learner_activity"] if r["activity_id"] == "a-gone")
    assert gone_activity == next(r for r in before["learner_activity"] if r["activity_id"] == "a-gone") | {
        "user_id": None, "first_name": None, "last_name": None, "email": None}
    assert [r for r in after["learner_activity"] if r["activity_id"] == "a-alive"] == [
        r for r in before["learner_activity"] if r["activity_id"] == "a-alive"]
    (fa,) = after["first_access"]
    assert fa == before["first_access"][0] | {"user_id": None}
    assert "u-gone" not in json.dumps(after, default=str)

    c = report["counts"]
    assert (c["users_erased"], c["users_still_holding"], c["seat_anonymised"]) == (1, 1, 2)
    assert (c["directory_change_pruned"], c["audit_log_pruned"], c["sync_cycle_pruned"]) == (1, 1, 1)
    # idempotent: a second run finds nothing
    assert set(purge(engine, settings, NOW)["counts"].values()) <= {0, 1} and snapshot(engine) == after


def test_retention_days_come_from_the_configuration(engine: Engine) -> None:
    seed(engine)
    settings = Settings.model_validate({"retention": {"audit_days": 10000, "deleted_user_days": 3}})
    c = purge(engine, settings, NOW)["counts"]
    assert (c["directory_change_pruned"], c["audit_log_pruned"], c["sync_cycle_pruned"]) == (0, 0, 0)
    assert c["users_erased"] == 2  # u-gone and u-recent (5 days > 3)


def test_purge_command_and_bad_config(tmp_path: Path) -> None:
    from licsync import db

    url = f"sqlite:///{tmp_path}/t.db"
    db.upgrade(db.get_engine(url))
    seed(db.get_engine(url))
    config = write_config(tmp_path / "licsync.toml", {"database": {"url": url}})
    r = cli(config, "--now", NOW.isoformat(), "purge", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"]["users_erased"] == 1 and json.loads(r.stdout)["dry_run"] is True
    r = cli(config, "--now", NOW.isoformat(), "purge")
    assert r.returncode == 0 and r.stdout.startswith("purge: ") and "1 users" in r.stdout, r.stdout
    bad = write_config(tmp_path / "bad.toml", {"database": {"url": url}, "retention": {"audit_days": 0}})
    r = cli(bad, "purge")
    assert r.returncode == 78 and "retention.audit_days" in r.stderr and r.stderr.count("\n") == 1


def test_the_daemon_purges_daily(engine: Engine) -> None:
    seed(engine)
    settings = Settings()

    async def go() -> Any:
        sched = SyncScheduler(settings, engine, default_jobs(), Locks(engine, instance_id()), clock=lambda: NOW,
                              tenants=[])
        sched.start()
        try:
            job = sched._sched.get_job("purge")
            assert job is not None and job.trigger.interval == timedelta(days=1)
            await sched._purge_job()
        finally:
            await sched.stop(1)

    asyncio.run(go())
    with Session(engine) as s:
        assert s.get(DirectoryUser, (T, "u-gone")) is None
        assert s.get(DirectoryUser, (T, "u-recent")) is not None


