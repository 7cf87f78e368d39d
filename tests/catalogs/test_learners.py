"""``remove_learner``: off the learner list, off the catalog's training, seat freed when it was the last."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from licsync.catalogs.learners import LearnerRemoval
from licsync.config import Settings
from licsync.db import session_scope
from licsync.db.models import AuditLog, Enrollment, LearnerListEntry
from licsync.errors import NotFound
from licsync.service import remove_learner
from tests.catalogs.conftest import NOW, TENANT, freed, open_seats, row, rows_of, run_import, snapshot_tables, write_csv


@pytest.fixture
def two_catalogs(db: Engine, settings: Settings, tmp_path: Path) -> Engine:
    rows = [
        row("u1", "c1"),  # u1: only cat1
        row("u1", "c2"),
        row("u1", "c2", role="admin"),
        row("u2", "c1"),  # u2: cat1 and cat2
        row("u2", "k1", catalog="cat2", catalog_name="Safety"),
        row("u3", "c1"),  # u3: cat1, and cat2 only through a deleted course
        row("u3", "k2", catalog="cat2", catalog_name="Safety", status="deleted"),
    ]
    run_import(db, settings, write_csv(tmp_path / "e.csv", rows))
    assert set(open_seats(db)) == {"u1", "u2", "u3"}
    return db


def remove(engine: Engine, settings: Settings, catalog: str, user: str) -> LearnerRemoval:
    with session_scope(engine) as s:
        return remove_learner(s, settings, TENANT, catalog, user, NOW)


def test_removed_from_the_last_catalog_frees_the_seat(two_catalogs: Engine, settings: Settings) -> None:
    db = two_catalogs
    result = remove(db, settings, "cat1", "u1")
    assert (result.seat_freed, result.reason, result.enrollments_removed) == (True, "removed_from_learner_list", 2)
    assert freed(db) == {"u1": "removed_from_learner_list"}
    # the admin assignment is not training: it stays
    assert {(r[1], r[3]) for r in rows_of(db, Enrollment) if r[2] == "u1"} == {("c2", "admin")}
    assert ("cat1", "u1") not in {(r[1], r[2]) for r in rows_of(db, LearnerListEntry)}
    t = AuditLog.__table__  # type: ignore[attr-defined]
    with db.connect() as c:
        detail = c.execute(select(t.c.detail).where(t.c.action == "learner_removed")).scalar_one()
    assert detail["user_id"] == "u1" and detail["seat_freed"] is True
    assert "seat freed (removed_from_learner_list)" in result.line()


def test_another_catalog_keeps_the_seat(two_catalogs: Engine, settings: Settings) -> None:
    db = two_catalogs
    result = remove(db, settings, "cat1", "u2")
    assert (result.seat_freed, result.reason, result.enrollments_removed) == (False, None, 1)
    assert "u2" in open_seats(db) and freed(db) == {}
    assert {r[1] for r in rows_of(db, Enrollment) if r[2] == "u2"} == {"k1"}


def test_a_deleted_course_elsewhere_does_not_keep_the_seat(two_catalogs: Engine, settings: Settings) -> None:
    result = remove(two_catalogs, settings, "cat1", "u3")
    assert (result.seat_freed, result.reason) == (True, "removed_from_learner_list")


@pytest.mark.parametrize(
    ("catalog", "user", "message"),
    [("nope", "u1", "has no catalog 'nope'"), ("cat2", "u1", "'u1' is not on the learner list of catalog 'cat2'")],
)
def test_unknown_catalog_or_learner(
    two_catalogs: Engine, settings: Settings, catalog: str, user: str, message: str
) -> None:
    before = snapshot_tables(two_catalogs)
    with pytest.raises(NotFound, match=message):
        remove(two_catalogs, settings, catalog, user)
    assert snapshot_tables(two_catalogs) == before
