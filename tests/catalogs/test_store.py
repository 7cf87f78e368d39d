"""``apply_snapshot``: the one writer, seen through snapshots of any source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from licsync.catalogs import (
    ActivationRecord,
    Applied,
    CatalogRecord,
    CatalogSnapshot,
    CourseRecord,
    EnrollmentRecord,
    LearnerRecord,
    apply_snapshot,
)
from licsync.db import session_scope
from licsync.db.models import Activation, Catalog, Course, Enrollment, LearnerListEntry
from tests.catalogs.conftest import NOW, TENANT, rows_of

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def lms_snapshot(*users: str, status: str = "published") -> CatalogSnapshot:
    return CatalogSnapshot(
        catalogs=[CatalogRecord("lms", "LMS catalog", ("cat-admin@contoso.com",))],
        courses=[CourseRecord("lms-c", "lms", "LMS course", status)],
        learners=[LearnerRecord("lms", u, T0) for u in users],
        enrollments=[EnrollmentRecord("lms-c", u, "learner", T0) for u in users],
        complete_courses=True,
    )


def seed_odata_catalog(engine: Engine, *users: str) -> None:
    """An OData-fed catalog with these learners, seats planned as a sync cycle would."""
    from tests.catalogs.conftest import make_settings

    with session_scope(engine) as s:
        applied = apply_snapshot(s, TENANT, lms_snapshot(*users), NOW, source="odata", replace=True)
        from licsync import reseat

        reseat.reseat(s, make_settings(), TENANT, sorted(applied.affected), NOW)


def apply(engine: Engine, snap: CatalogSnapshot, *, source: str = "odata", replace: bool = True) -> Applied:
    with session_scope(engine) as s:
        return apply_snapshot(s, TENANT, snap, NOW, source=source, replace=replace)


def test_apply_twice_is_a_no_op(db: Engine) -> None:
    first = apply(db, lms_snapshot("u1", "u2"))
    assert first.affected == {"u1", "u2"} and first.changed
    assert [(r[1], r[3]) for r in rows_of(db, Catalog)] == [("lms", "odata")]
    assert rows_of(db, Catalog)[0][4] == ["cat-admin@contoso.com"]
    again = apply(db, lms_snapshot("u1", "u2"))
    assert not again.changed and again.affected == set()


def test_missing_course_of_a_complete_listing_is_deleted_and_enrollments_kept(db: Engine) -> None:
    apply(db, lms_snapshot("u1"))
    gone = CatalogSnapshot(catalogs=[CatalogRecord("lms", "LMS catalog")], complete_courses=True)
    result = apply(db, gone)
    assert (result.courses_deleted, result.enrollments_removed, result.learners_removed) == (1, 0, 1)
    assert [r[4] for r in rows_of(db, Course)] == ["deleted"]
    assert len(rows_of(db, Enrollment)) == 1  # kept, so the seat is freed as course_deleted
    assert result.affected == {"u1"}
    assert rows_of(db, Catalog)[0][4] == ["cat-admin@contoso.com"]  # admins not given: kept


def test_replace_by_one_source_leaves_the_others_catalogs(db: Engine) -> None:
    csv_snap = CatalogSnapshot(
        catalogs=[CatalogRecord("cat1", "Sales")],
        courses=[CourseRecord("c1", "cat1")],
        learners=[LearnerRecord("cat1", "u1")],
        enrollments=[EnrollmentRecord("c1", "u1", "learner", T0)],
    )
    apply(db, csv_snap, source="csv", replace=True)
    apply(db, lms_snapshot("u2"))
    empty_lms = CatalogSnapshot(catalogs=[CatalogRecord("lms", "LMS catalog")], complete_courses=True)
    apply(db, empty_lms)
    assert ("c1", "u1", "learner") in {(r[1], r[2], r[3]) for r in rows_of(db, Enrollment)}
    assert [r[4] for r in rows_of(db, Course) if r[1] == "c1"] == ["published"]
    assert {(r[1], r[2]) for r in rows_of(db, LearnerListEntry)} == {("cat1", "u1")}


def test_records_naming_unknown_courses_or_catalogs_are_skipped(db: Engine) -> None:
    snap = CatalogSnapshot(
        learners=[LearnerRecord("nowhere", "u1")],
        enrollments=[EnrollmentRecord("no-course", "u1", "learner", T0)],
    )
    result = apply(db, snap, replace=False)
    assert result.skipped == 2 and not result.changed
    assert rows_of(db, Enrollment) == [] and rows_of(db, LearnerListEntry) == []


def test_activations_upsert_and_deactivate(db: Engine) -> None:
    on = CatalogSnapshot(activations=[ActivationRecord("flow-1", "flow365", "Front line", T0)])
    assert apply(db, on).affected == {"flow-1"}
    assert apply(db, on).activations_changed == 0
    off = CatalogSnapshot(activations=[ActivationRecord("flow-1", "flow365", "Front line", T0, T0 + timedelta(9))])
    result = apply(db, off)
    assert result.affected == {"flow-1"} and result.activations_changed == 1
    assert rows_of(db, Activation)[0][5] == T0 + timedelta(9)
    assert apply(db, CatalogSnapshot(activations=[])).activations_changed == 0  # absence never deactivates


def test_bulk_mode_restores_gc_and_sqlite_cache(db: Engine) -> None:
    import gc

    from licsync.db.bulk import SQLITE_BULK_CACHE_KIB, bulk_mode

    sqlite = db.dialect.name == "sqlite"
    with session_scope(db) as s:
        conn = s.connection()
        before = conn.exec_driver_sql("PRAGMA cache_size").scalar() if sqlite else None
        with bulk_mode(s):
            assert not gc.isenabled()
            if sqlite:
                assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -SQLITE_BULK_CACHE_KIB
        assert gc.isenabled()
        if sqlite:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == before


def test_large_batches_take_the_fast_path_with_the_same_result(db: Engine) -> None:
    users = [f"bulk-{i:04d}" for i in range(1200)]
    snap = CatalogSnapshot(
        catalogs=[CatalogRecord("cat1", "Sales")],
        courses=[CourseRecord("c1", "cat1")],
        learners=[LearnerRecord("cat1", u, T0) for u in users],
        enrollments=[EnrollmentRecord("c1", u, "learner", T0, T0 + timedelta(days=365), f"{u}@x") for u in users],
    )
    assert apply(db, snap, source="csv").enrollments_added == 1200
    stored = rows_of(db, Enrollment)
    assert len(stored) == 1200 and stored[0][4:] == (T0, T0 + timedelta(days=365), "bulk-0000@x")
    assert not apply(db, snap, source="csv").changed  # read back equal: dates survive the raw path
    moved = snap.enrollments[:600]
    later = [e._replace(enrolled_at=T0 + timedelta(hours=1)) for e in moved]
    result = apply(db, CatalogSnapshot(courses=snap.courses, enrollments=later), source="csv", replace=False)
    assert result.enrollments_updated == 600
    assert sorted(r[4] for r in rows_of(db, Enrollment))[-1] == T0 + timedelta(hours=1)
    gone = apply(db, CatalogSnapshot(catalogs=snap.catalogs, courses=snap.courses), source="csv")
    assert gone.enrollments_removed == 1200 and gone.learners_removed == 1200 and rows_of(db, Enrollment) == []
