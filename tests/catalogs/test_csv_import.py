"""``import enrollments``: seats follow the file, a bad file changes nothing, the same file twice is a no-op."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from licsync.catalogs.csv_import import HEADER
from licsync.config import Settings
from licsync.db.models import AuditLog, Catalog, Course, Enrollment, LearnerListEntry
from licsync.errors import InputError
from tests.catalogs.conftest import (
    NOW,
    TENANT,
    freed,
    make_settings,
    open_seats,
    row,
    rows_of,
    run_import,
    snapshot_tables,
    write_csv,
)

LATER = NOW + timedelta(hours=1)


def test_learners_take_seats_admins_alone_do_not(db: Engine, settings: Settings, tmp_path: Path) -> None:
    f = write_csv(
        tmp_path / "e.csv",
        [
            row("u1", "c1"),
            row("u2", "c2", status="unpublished"),  # an unpublished course still counts
            row("u3", "c1", role="admin"),  # admin only: no seat
            row("u4", "c1", role="admin"),
            row("u4", "c2", status="unpublished"),  # an enrolled admin counts
            row("u5", "c3", status="deleted"),  # a deleted course does not
            row("ghost", "c1"),  # not in the directory: no seat
        ],
    )
    result = run_import(db, settings, f)
    assert open_seats(db) == {"u1": "enrolled", "u2": "enrolled", "u4": "enrolled"}
    a = result.applied
    assert (result.rows, a.enrollments_added, a.admins_added, a.courses_added, a.catalogs_added) == (7, 5, 2, 3, 1)
    assert (result.seats_taken, result.seats_freed, result.hold_id) == (3, 0, None)
    assert a.affected == {"u1", "u2", "u3", "u4", "u5", "ghost"}
    assert {(r[1], r[2]) for r in rows_of(db, LearnerListEntry)} == {
        ("cat1", u) for u in ("u1", "u2", "u4", "u5", "ghost")
    }  # admin rows do not put anyone on the learner list
    roles = {(r[1], r[2], r[3]) for r in rows_of(db, Enrollment)}
    assert ("c1", "u3", "admin") in roles and ("c1", "u4", "admin") in roles
    assert "seats +3 −0" in result.line()


def test_course_deleted_frees_unless_other_training(db: Engine, settings: Settings, tmp_path: Path) -> None:
    run_import(db, settings, write_csv(tmp_path / "a.csv", [row("u1", "c1"), row("u2", "c1"), row("u2", "c2")]))
    assert set(open_seats(db)) == {"u1", "u2"}
    result = run_import(db, settings, write_csv(tmp_path / "b.csv", [row("u1", "c1", status="deleted")]), now=LATER)
    assert freed(db) == {"u1": "course_deleted"}  # u2 still has c2
    assert set(open_seats(db)) == {"u2"}
    assert (result.applied.courses_deleted, result.seats_freed) == (1, 1)
    assert result.applied.affected == {"u1", "u2"}  # every learner of the changed course, nobody else


def test_replace_removes_absent_and_keeps_the_rest(db: Engine, settings: Settings, tmp_path: Path) -> None:
    first = [row("u1", "c1"), row("u2", "c1"), row("u3", "c1"), row("u3", "c1", role="admin"), row("u4", "c2")]
    run_import(db, settings, write_csv(tmp_path / "a.csv", first))
    assert set(open_seats(db)) == {"u1", "u2", "u3", "u4"}
    # u2 is gone; u3 lost the admin assignment; the file says nothing of c2 (u4)
    second = [row("u1", "c1"), row("u3", "c1")]
    result = run_import(db, settings, write_csv(tmp_path / "b.csv", second), replace=True, now=LATER)
    assert freed(db) == {"u2": "last_enrollment_removed", "u4": "last_enrollment_removed"}
    assert set(open_seats(db)) == {"u1", "u3"}
    a = result.applied
    assert (a.enrollments_removed, a.admins_removed, a.learners_removed) == (2, 1, 2)
    assert a.affected == {"u2", "u3", "u4"}
    assert {(r[1], r[2], r[3]) for r in rows_of(db, Enrollment)} == {("c1", "u1", "learner"), ("c1", "u3", "learner")}
    assert {r[2] for r in rows_of(db, LearnerListEntry)} == {"u1", "u3"}
    # without --replace the same file removes nothing
    again = run_import(db, settings, write_csv(tmp_path / "c.csv", [row("u1", "c1")]), now=LATER)
    assert (again.applied.enrollments_removed, again.seats_freed) == (0, 0)


def test_rerunning_the_same_import_changes_nothing(db: Engine, settings: Settings, tmp_path: Path) -> None:
    f = write_csv(
        tmp_path / "e.csv", [row("u1", "c1"), row("u2", "c2", expires="2027-01-05"), row("u3", "c1", role="admin")]
    )
    run_import(db, settings, f, replace=True)
    before = snapshot_tables(db)
    for replace in (True, False):
        again = run_import(db, settings, f, replace=replace, now=LATER)
        assert not again.applied.changed and not again.applied.affected
        assert (again.seats_taken, again.seats_freed) == (0, 0)
    after = snapshot_tables(db)
    audit = after.pop("audit_log")
    before.pop("audit_log")
    assert after == before  # only the two audit rows of the imports were added
    assert [r[7]["enrollments_added"] for r in audit if r[5] == "enrollments_imported"] == [2, 0, 0]


def test_a_bad_file_is_refused_whole(db: Engine, settings: Settings, tmp_path: Path) -> None:
    run_import(db, settings, write_csv(tmp_path / "good.csv", [row("u1", "c1"), row("u2", "c1")]))
    before = snapshot_tables(db)
    bad = [
        row("u3", "c1"),  # line 2: fine on its own
        row("", "c1"),  # 3: empty user_id
        row("u4", "c1", status="archived"),  # 4
        row("u5", "c1", role="teacher"),  # 5
        row("u6", "c1", enrolled="05/01/2026"),  # 6
        row("u7", "c1", enrolled="2026-02-01", expires="2026-01-01"),  # 7
        row("u8", "c1", title="Another title"),  # 8: same course, other title
        row("u9", "c1", catalog="cat2"),  # 9: same course, other catalog
        ["cat1", "Sales", "c1"],  # 10: wrong column count
        row("u1", "c1", enrolled="2026-01-06T00:00:00Z"),  # 11: fine: u1's stored dates may change
        row("u3", "c1", enrolled="2026-01-07"),  # 12: conflicting duplicate of line 2
        row("u3", "c1"),  # 13: identical duplicate of line 2: harmless
        row("u2", "", catalog=""),  # 14: empty course_id and catalog_id
    ]
    with pytest.raises(InputError) as err:
        run_import(db, settings, write_csv(tmp_path / "bad.csv", bad), replace=True, now=LATER)
    problems = err.value.problems
    lines = [int(p.split(":")[0].removeprefix("line ")) for p in problems]
    assert lines == [3, 4, 5, 6, 7, 8, 9, 10, 12, 14]
    text = "\n".join(problems)
    for reason in (
        "line 3: user_id is empty",
        "line 4: course_status 'archived' is not one of published, unpublished, deleted",
        "line 5: role 'teacher' is not one of learner, admin",
        "line 6: enrolled_at '05/01/2026' is not an ISO-8601",
        "line 7: expires_at 2026-01-01 is before enrolled_at 2026-02-01",
        "line 8: course 'c1' has title 'Another title' here but 'Course c1' on line 2",
        "line 9: course 'c1' has catalog 'cat2' here but 'cat1' on line 2",
        "line 10: expected 10 columns, found 3",
        "line 12: user 'u3' is given again as learner of course 'c1'",
        "line 14: catalog_id is empty; course_id is empty",
    ):
        assert reason in text
    assert "nothing was imported" in str(err.value)
    assert snapshot_tables(db) == before  # nothing at all changed, seats and audit included


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ([h for h in HEADER if h != "role"], "line 1: missing column(s): role"),
        ([*HEADER, "notes"], "line 1: unknown column(s): 'notes'"),
        ([*HEADER[:-1], "enrolled_at"], "line 1: missing column(s): expires_at"),
    ],
)
def test_bad_header(db: Engine, settings: Settings, tmp_path: Path, header: list[str], reason: str) -> None:
    f = write_csv(tmp_path / "h.csv", [row("u1")], header=header)
    with pytest.raises(InputError) as err:
        run_import(db, settings, f)
    assert reason in err.value.problems
    assert open_seats(db) == {}


def test_header_columns_in_any_order(db: Engine, settings: Settings, tmp_path: Path) -> None:
    order = list(reversed(HEADER))
    f = write_csv(tmp_path / "r.csv", [list(reversed(row("u1")))], header=order)
    run_import(db, settings, f)
    assert open_seats(db) == {"u1": "enrolled"}


def test_bom_and_crlf_are_accepted(db: Engine, settings: Settings, tmp_path: Path) -> None:
    f = write_csv(
        tmp_path / "w.csv", [row("u1", "c1"), row("u2", "c2", title="Café, “quoted”\nline")], newline="\r\n", bom=True
    )
    result = run_import(db, settings, f)
    assert result.rows == 2
    assert set(open_seats(db)) == {"u1", "u2"}
    with pytest.raises(InputError) as err:  # the quoted newline keeps the line numbers honest
        run_import(db, settings, write_csv(tmp_path / "x.csv", [row("u1", title="a\nb"), row("u2", role="x")]))
    assert err.value.problems[0].startswith("line 4: ")


def test_non_utf8_is_refused(db: Engine, settings: Settings, tmp_path: Path) -> None:
    f = write_csv(tmp_path / "l.csv", [row("u1"), row("u2")])
    data = f.read_bytes().replace(b"u2@contoso.com", b"u2@contoso.com" + "é".encode("latin-1"))
    f.write_bytes(data)
    with pytest.raises(InputError) as err:
        run_import(db, settings, f)
    assert err.value.problems == ["line 3: not UTF-8 text (byte 0xE9 at column 52); save the file as UTF-8"]
    assert open_seats(db) == {}
    f.write_bytes(b"\xff\xfe" + "catalog_id".encode("utf-16-le"))
    with pytest.raises(InputError, match="UTF-16"):
        run_import(db, settings, f)


def test_formula_looking_cells_are_plain_data(db: Engine, settings: Settings, tmp_path: Path) -> None:
    evil = '=HYPERLINK("http://x","y")'
    f = write_csv(tmp_path / "f.csv", [row("u1", "+c1", catalog="@cat", catalog_name="-1+1", title=evil)])
    run_import(db, settings, f)
    assert [(r[1], r[2], r[3]) for r in rows_of(db, Course)] == [("+c1", "@cat", evil)]
    assert [r[2] for r in rows_of(db, Catalog)] == ["-1+1"]
    assert open_seats(db) == {"u1": "enrolled"}


def test_empty_file_with_replace_is_refused(db: Engine, settings: Settings, tmp_path: Path) -> None:
    run_import(db, settings, write_csv(tmp_path / "a.csv", [row("u1")]))
    with pytest.raises(InputError, match="no rows"):
        run_import(db, settings, write_csv(tmp_path / "e.csv", []), replace=True)
    (tmp_path / "z.csv").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        run_import(db, settings, tmp_path / "z.csv")
    assert open_seats(db) == {"u1": "enrolled"}


def test_odata_catalogs_are_not_fed_by_csv(db: Engine, settings: Settings, tmp_path: Path) -> None:
    with db.begin() as c:
        c.execute(Catalog.__table__.insert(), [{"tenant": TENANT, "id": "lms", "name": "LMS", "source": "odata"}])
    with pytest.raises(InputError) as err:
        run_import(db, settings, write_csv(tmp_path / "o.csv", [row("u1", catalog="lms", catalog_name="LMS")]))
    assert "fed by the LMS connector" in err.value.problems[0]


def test_replace_leaves_odata_catalogs_alone(db: Engine, settings: Settings, tmp_path: Path) -> None:
    from tests.catalogs.test_store import seed_odata_catalog

    seed_odata_catalog(db, "u5")
    run_import(db, settings, write_csv(tmp_path / "a.csv", [row("u1")]), replace=True)
    assert set(open_seats(db)) == {"u1", "u5"}
    assert ("lms-c", "u5", "learner") in {(r[1], r[2], r[3]) for r in rows_of(db, Enrollment)}


def test_mass_free_is_held_for_approval(db: Engine, tmp_path: Path) -> None:
    settings = make_settings(mass_free_threshold=1, mass_free_fraction=1.0)
    run_import(db, settings, write_csv(tmp_path / "a.csv", [row(f"u{i}") for i in range(1, 6)]))
    result = run_import(db, settings, write_csv(tmp_path / "b.csv", [row("u1")]), replace=True, now=LATER)
    assert result.hold_id and result.frees_held == 4 and result.seats_freed == 0
    assert len(open_seats(db)) == 5  # the frees wait for an admin
    assert "HELD" in result.line()


def test_audit_row_counts_the_import(db: Engine, settings: Settings, tmp_path: Path) -> None:
    run_import(db, settings, write_csv(tmp_path / "a.csv", [row("u1"), row("u2", role="admin")]))
    t = AuditLog.__table__  # type: ignore[attr-defined]
    with db.connect() as c:
        detail = c.execute(select(t.c.detail).where(t.c.action == "enrollments_imported")).scalar_one()
    assert detail["rows"] == 2 and detail["enrollments_added"] == 1 and detail["admins_added"] == 1
    assert detail["seats_taken"] == 1 and detail["file"] == "a.csv"


def test_dates_with_offsets_are_stored_as_utc(db: Engine, settings: Settings, tmp_path: Path) -> None:
    f = write_csv(tmp_path / "d.csv", [row("u1", enrolled="2026-01-05T10:00:00+02:00", expires="2027-01-05")])
    run_import(db, settings, f)
    (r,) = rows_of(db, Enrollment)
    assert r[4] == datetime(2026, 1, 5, 8, 0, tzinfo=UTC) and r[5] == datetime(2027, 1, 5, tzinfo=UTC)
    run_import(
        db,
        settings,
        write_csv(tmp_path / "e.csv", [row("u1", enrolled="2026-01-05T08:00:00Z", expires="2027-01-05T00:00:00Z")]),
    )
    assert open_seats(db) == {"u1": "enrolled"}


def test_cells_longer_than_their_columns_are_refused(db: Engine, settings: Settings, tmp_path: Path) -> None:
    f = write_csv(tmp_path / "long.csv", [row("u" * 65), row("u1", "c2", title="t" * 513)])
    with pytest.raises(InputError) as err:
        run_import(db, settings, f)
    assert err.value.problems == [
        "line 2: user_id is longer than 64 characters",
        "line 3: course_title is longer than 512 characters",
    ]
