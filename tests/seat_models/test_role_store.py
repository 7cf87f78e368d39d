"""The ``role`` adapter on SQLite and PostgreSQL: pools from the key, imports, refusals, races, inactivity."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from licsync import db
from licsync.db import session_scope
from licsync.db.models_seat_models import PoolSeat
from licsync.errors import InputError
from licsync.seat_models import role_store
from tests.seat_models.conftest import NOW, TENANT, activate, audit_actions, make_settings, write_rows

POOLS = {"elearn": 2, "weclimb": 1, "combined": 1}


def pools(engine: Engine) -> dict[str, tuple[int, int, int]]:
    with session_scope(engine) as s:
        report = role_store.pool_report(s, make_settings(), TENANT, NOW)
    return {p["pool"]: (p["total"], p["assigned"], p["available"]) for p in report["pools"]}


def imp(engine: Engine, path: Path, replace: bool = False) -> role_store.RoleImportResult:
    with session_scope(engine) as s:
        return role_store.import_roles(s, make_settings(), TENANT, path, replace=replace, now=NOW)


def test_roles_take_and_return_pool_seats_and_a_full_pool_refuses(
    engine: Engine, vendor: tuple[bytes, str], tmp_path: Path
) -> None:
    activate(engine, vendor, policy="role", seats=4, overage="block", pools=POOLS)
    r = imp(engine, write_rows(tmp_path / "r.csv", ("user_id", "role"), [
        ["u1", "teacher"], ["u2", "observer"], ["u3", "observer"], ["u3", "teacher"], ["u4", "teacher"],
        ["u5", "leader"], ["u6", "student"]]))
    s = r.summary()
    assert (s["assigned"], s["seats_taken"]) == (5, 4)
    assert [(x["user_id"], x["role"], x["reason"], x["pool"]) for x in s["refused"]] == [
        ("u3", "observer", "pool_full", "weclimb"), ("u4", "teacher", "pool_full", "elearn")]
    assert pools(engine) == {"combined": (1, 1, 0), "elearn": (2, 2, 0), "weclimb": (1, 1, 0)}
    assert audit_actions(engine).count("role_refused") == 2
    # --replace: the file is the whole truth; seats go back before the file's additions are decided.
    r = imp(engine, write_rows(tmp_path / "r2.csv", ("user_id", "role"), [["u1", "teacher"], ["u4", "teacher"],
                                                                          ["u4", "observer"]]), replace=True)
    s = r.summary()
    assert (s["removed"], s["seats_returned"], s["assigned"], s["refused"]) == (4, 3, 2, [])
    assert pools(engine) == {"combined": (1, 0, 1), "elearn": (2, 2, 0), "weclimb": (1, 1, 0)}
    # The same file again changes nothing.
    again = imp(engine, write_rows(tmp_path / "r3.csv", ("user_id", "role"), [["u1", "teacher"], ["u4", "teacher"],
                                                                              ["u4", "observer"]]), replace=True)
    assert again.plan.decisions == ()


def test_a_role_import_is_refused_for_another_policy_and_when_empty_with_replace(
    engine: Engine, vendor: tuple[bytes, str], tmp_path: Path
) -> None:
    f = write_rows(tmp_path / "r.csv", ("user_id", "role"), [["u1", "teacher"]])
    activate(engine, vendor, policy="enrollment", seats=4)
    with pytest.raises(InputError, match="counts seats by enrollment, not role"):
        imp(engine, f)
    activate(engine, vendor, policy="role", seats=4, pools=POOLS, sub_id="SUB-2")
    with pytest.raises(InputError, match="would remove every role"):
        imp(engine, write_rows(tmp_path / "e.csv", ("user_id", "role"), []), replace=True)


def test_inactive_assignments_come_from_sign_in_activity(engine: Engine, vendor: tuple[bytes, str],
                                                         tmp_path: Path) -> None:
    activate(engine, vendor, policy="role", seats=4, pools=POOLS)
    long_ago = NOW - timedelta(days=200)
    with session_scope(engine) as s:
        for user, role in (("u1", "teacher"), ("u2", "teacher"), ("u3", "observer")):
            role_store.assign_role(s, make_settings(), TENANT, user, role, long_ago)
    with session_scope(engine) as s:
        assert role_store.pool_report(s, make_settings(), TENANT, NOW)["inactive"] is None  # never read: unknown
        role_store.store_sign_ins(s, TENANT, [("u1", NOW - timedelta(days=3)), ("u2", NOW - timedelta(days=120)),
                                              ("u3", None)], NOW)
    with session_scope(engine) as s:
        report = role_store.pool_report(s, make_settings(), TENANT, NOW)
        short = role_store.pool_report(s, make_settings(), TENANT, NOW, days=2)
    assert [(x["user_id"], x["pool"]) for x in report["inactive"]] == [("u2", "elearn"), ("u3", "weclimb")]
    assert {p["pool"]: p["inactive"] for p in report["pools"]} == {"combined": 0, "elearn": 1, "weclimb": 1}
    assert len(short["inactive"]) == 3


def _race(url: str, contenders: int, who: str) -> tuple[int, int]:
    engine = db.get_engine(url)
    settings = make_settings(url)
    barrier = threading.Barrier(contenders)
    granted: list[bool] = []
    errors: list[BaseException] = []

    def contend(i: int) -> None:
        try:
            barrier.wait()
            with session_scope(engine) as s:
                d = role_store.assign_role(s, settings, TENANT, f"{who}{i}", "teacher", NOW)
            granted.append(d.granted)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with engine.connect() as c:
        held = c.execute(select(func.count()).select_from(PoolSeat.__table__)  # type: ignore[attr-defined]
                         .where(PoolSeat.pool == "elearn")).scalar_one()
    return sum(granted), held


@pytest.mark.postgres
def test_racing_assignments_never_over_allocate_on_postgresql(pg_schema_url: str, vendor: tuple[bytes, str]) -> None:
    engine = db.get_engine(pg_schema_url)
    db.upgrade(engine)
    activate(engine, vendor, policy="role", seats=3, overage="block", pools={"elearn": 3})
    assert _race(pg_schema_url, 12, "first") == (3, 3)
    assert _race(pg_schema_url, 4, "late") == (0, 3)  # full: every racer refused


@pytest.mark.postgres
def test_racing_for_the_very_last_seat_gives_one_seat(pg_schema_url: str, vendor: tuple[bytes, str]) -> None:
    engine = db.get_engine(pg_schema_url)
    db.upgrade(engine)
    activate(engine, vendor, policy="role", seats=1, overage="block", pools={"elearn": 1})
    # The pool row does not exist before the first round: its upsert must serialise the racers too.
    assert _race(pg_schema_url, 2, "a") == (1, 1)
    assert _race(pg_schema_url, 2, "b") == (0, 1)
