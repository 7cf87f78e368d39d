"""CSV fuzzing, end to end through ``licsync import enrollments`` and the API's CSV exports.

Each generated file is valid — formula-looking cells, quotes, commas, line breaks and non-Latin text
inside cells, a BOM, CRLF, columns in any order, exact duplicate rows — or carries exactly one known
defect (a bad role, status or date, an empty or too long cell, a NUL, a conflicting duplicate, a
ragged row, a byte that is not UTF-8, UTF-16, a field beyond the CSV field limit). The oracle:

* a valid file is imported (exit 0), every cell stored as written — ``=HYPERLINK(…)`` stays data;
* a defective one is refused whole (exit 65), the first line one clear sentence, the defect's line
  named, the database exactly as before; never a traceback.

Exports (status and holders CSV) of such data never start a text cell with ``=``, ``+``, ``-``,
``@``, a tab or CR, and the original text is recoverable (the added ``'`` is the only change).
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync import db, tokens
from licsync.catalogs.csv_import import HEADER
from licsync.cli import main
from licsync.config import load_settings
from licsync.csvfiles import FORMULA_PREFIXES
from licsync.db import session_scope
from licsync.db.models import Catalog, Course, DirectoryUser, Enrollment
from licsync.errors import InputError
from licsync.service import import_enrollments
from tests.conftest import write_config
from tests.faults import ledger
from tests.faults.world import NOW, SOAK

EXAMPLES = 1000 if SOAK else 80
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not SOAK,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
USERS = [f"u-{i}" for i in range(6)]
TABLES = ("catalog", "course", "enrollment", "learner_list", "seat", "seat_catalog", "catalog_count", "audit_log",
          "outbox", "mass_free_hold")
EVIL = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+2", "-2+3", "@SUM(A1)", "=cmd|' /C calc'!A0",
        "\tTabbed", "Ünïcødé 講座", "quote \" inside", "comma, inside", "line\nbreak", "plain"]
DEFECTS = ["bad role", "bad status", "bad date", "expires first", "empty user", "long course id", "NUL",
           "catalog renamed", "conflicting duplicate", "ragged row", "latin-1 byte", "utf-16", "huge field"]


@dataclass
class File:
    rows: list[dict[str, str]]
    encoding: str = "utf-8"
    newline: str = "\n"
    order: list[str] = field(default_factory=lambda: list(HEADER))
    defect: str | None = None
    defect_line: int | None = None

    def render(self) -> bytes:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator=self.newline)
        w.writerow(self.order)
        starts = []  # the physical line each record starts on (a cell may hold line breaks)
        for r in self.rows:
            starts.append(len(re.findall(r"\r\n|\r|\n", buf.getvalue())) + 1)
            w.writerow([r[c] for c in self.order])
        if self.defect_line is not None:
            self.defect_line = starts[self.defect_line - 2]
        body = buf.getvalue()
        if self.defect == "ragged row":
            lines = body.split(self.newline)
            lines[-2] += ",extra"
            body = self.newline.join(lines)
        if self.encoding == "utf-16":
            return body.encode("utf-16")
        data = body.encode("utf-8-sig" if self.encoding == "utf-8-sig" else "utf-8")
        if self.defect == "latin-1 byte":
            data += "x,é\n".encode("latin-1")
        return data


@st.composite
def csv_files(draw: st.DrawFn) -> File:
    cell = st.sampled_from(EVIL)
    catalogs = {f"{draw(st.sampled_from(['', '=', '@']))}cat-{i}": draw(cell) for i in range(draw(st.integers(1, 3)))}
    courses = {f"{draw(st.sampled_from(['', '+', '-']))}c-{i}": (draw(st.sampled_from(sorted(catalogs))), draw(cell),
                                                                  draw(st.sampled_from(["published", "unpublished",
                                                                                        "deleted"])))
               for i in range(draw(st.integers(1, 4)))}
    rows = []
    for _ in range(draw(st.integers(1, 8))):
        course = draw(st.sampled_from(sorted(courses)))
        cat, title, status = courses[course]
        day = draw(st.integers(1, 28))
        rows.append({"catalog_id": cat, "catalog_name": catalogs[cat], "course_id": course, "course_title": title,
                     "course_status": status, "user_id": draw(st.sampled_from(USERS)),
                     "user_principal_name": draw(cell), "role": draw(st.sampled_from(["learner", "admin"])),
                     "enrolled_at": f"2026-01-{day:02d}T00:00:00Z",
                     "expires_at": draw(st.sampled_from(["", "2027-01-01", "2026-12-31T23:59:59+02:00"]))})
    seen: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in rows:  # one user's role in a course comes once, or as exact duplicates
        seen.setdefault((r["course_id"], r["user_id"], r["role"]), r)
    rows = [dict(seen[(r["course_id"], r["user_id"], r["role"])]) for r in rows]
    f = File(rows, encoding=draw(st.sampled_from(["utf-8", "utf-8-sig"])),
             newline=draw(st.sampled_from(["\n", "\r\n"])), order=draw(st.permutations(list(HEADER))))
    if draw(st.booleans()):
        _defect(f, draw(st.sampled_from(DEFECTS)), draw(st.integers(0, len(rows) - 1)))
    return f


def _defect(f: File, defect: str, i: int) -> None:
    r = f.rows[i]
    f.defect, f.defect_line = defect, i + 2
    match defect:
        case "bad role":
            r["role"] = "teacher"
        case "bad status":
            r["course_status"] = "archived"
        case "bad date":
            r["enrolled_at"] = "yesterday"
        case "expires first":
            r["expires_at"] = "2025-01-01"
        case "empty user":
            r["user_id"] = ""
        case "long course id":
            r["course_id"] = "c" * 129
        case "NUL":
            r["course_title"] = "nul\x00here"
        case "catalog renamed":
            f.rows.append(dict(r, catalog_name=r["catalog_name"] + " (renamed)"))
            f.defect_line = len(f.rows) + 1
        case "conflicting duplicate":
            f.rows.append(dict(r, enrolled_at="2026-02-01T00:00:00Z"))
            f.defect_line = len(f.rows) + 1
        case "huge field":
            r["course_title"] = "H" * 200_000
        case "ragged row":
            f.defect_line = len(f.rows) + 1
        case "utf-16":
            f.encoding, f.defect_line = "utf-16", None
        case "latin-1 byte":
            f.defect_line = None  # the line number is counted in bytes (multi-line cells shift it)


def snapshot(engine: Engine) -> dict[str, list[Any]]:
    with engine.connect() as c:
        return {t: sorted(map(repr, c.execute(text(f"SELECT * FROM {t}")).all())) for t in TABLES}  # noqa: S608


@pytest.fixture(scope="module")
def lms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Engine]]:
    tmp = tmp_path_factory.mktemp("csv-fuzz")
    url = f"sqlite:///{tmp}/licsync.db"
    config = write_config(tmp / "licsync.toml", {"database": {"url": url}, "tenant": [
        {"name": "contoso", "tenant_id": "t-1", "client_id": "c-1", "client_secret": "file:/dev/null"}],
        "seats": {"mass_free_threshold": 10_000, "mass_free_fraction": 1.0}})
    engine = db.get_engine(url)
    db.upgrade(engine)
    with session_scope(engine) as s:
        for uid in USERS:
            s.add(DirectoryUser(tenant="contoso", id=uid, upn=f"{uid}@contoso.example", display_name=EVIL[0] + uid,
                                account_enabled=True, deleted="none", first_seen=NOW))
    yield config, engine
    engine.dispose()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@FUZZ
@given(f=csv_files())
def test_fuzzed_enrollment_files_are_imported_exactly_or_refused_whole(lms: tuple[Path, Engine], f: File,
                                                                      tmp_path: Path) -> None:
    """The use case the CLI calls, per example (the CLI's own mapping is checked below, once per defect)."""
    config, engine = lms
    path = tmp_path / "enrollments.csv"
    path.write_bytes(f.render())
    ledger.fuzzed(f"CSV imports ({f.defect or 'valid'})")
    before = snapshot(engine)
    try:
        with session_scope(engine) as s:
            import_enrollments(s, load_settings(config), "contoso", path, replace=False, now=NOW)
    except InputError as exc:
        assert f.defect is not None, f"a valid file was refused: {exc} {exc.problems}"
        assert "\n" not in str(exc) and all("\n" not in p for p in exc.problems)
        if f.defect_line is not None:
            assert any(p.startswith(f"line {f.defect_line}:") for p in exc.problems), (f.defect, exc.problems)
        assert snapshot(engine) == before, f"a refused file ({f.defect}) changed the database"
        return
    assert f.defect is None, f"a file with a defect ({f.defect}) was imported"
    _assert_stored(engine, f.rows)


@pytest.mark.parametrize("defect", [None, *DEFECTS])
def test_the_cli_refuses_with_one_line_and_exit_65(lms: tuple[Path, Engine], defect: str | None,
                                                   capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config, engine = lms
    f = File([{"catalog_id": "=cli", "catalog_name": EVIL[0], "course_id": "cli-1", "course_title": "line\nbreak",
               "course_status": "published", "user_id": USERS[0], "user_principal_name": "@x",
               "role": "learner", "enrolled_at": "2026-01-02", "expires_at": ""}])
    if defect:
        _defect(f, defect, 0)
    path = tmp_path / "e.csv"
    path.write_bytes(f.render())
    before = snapshot(engine)
    code, err = cli(capsys, "--config", str(config), "import", "enrollments", "--tenant", "contoso", str(path))
    assert "Traceback" not in err and "internal error" not in err, err
    if defect is None:
        assert code == 0, err
        return
    first, *problems = err.splitlines()
    assert code == 65 and first.startswith("licsync: error: "), err
    assert all(p.startswith("  line ") for p in problems), err
    assert snapshot(engine) == before


def _assert_stored(engine: Engine, rows: list[dict[str, str]]) -> None:
    """Every cell as written (stripped): formula-looking text is data, stored verbatim."""
    with Session(engine) as s:
        for r in rows:
            cat = s.get(Catalog, ("contoso", r["catalog_id"].strip()))
            course = s.get(Course, ("contoso", r["course_id"].strip()))
            assert cat is not None and cat.name == r["catalog_name"].strip()
            assert course is not None and course.title == r["course_title"].strip()
            e = s.execute(select(Enrollment).where(  # type: ignore[call-overload]
                Enrollment.tenant == "contoso", Enrollment.course_id == r["course_id"].strip(),
                Enrollment.user_id == r["user_id"], Enrollment.role == r["role"])).scalars().one()
            assert (e.upn or "") == r["user_principal_name"].strip()


def test_exports_neutralise_formulas_and_keep_the_text(lms: tuple[Path, Engine]) -> None:
    """After the fuzzed imports above (and directory names that are formulas), every export cell is safe."""
    from licsync.api import create_app

    config, engine = lms
    with session_scope(engine) as s:
        admin = tokens.create_token(s, "contoso", "tenant-admin", [], NOW)
        cats = [c for c in s.execute(select(Catalog.id)).scalars().all()]  # type: ignore[call-overload]
        cat_admin = tokens.create_token(s, "contoso", "catalog-admin", cats[:1] or ["none"], NOW) if cats else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    checked = 0
    with TestClient(create_app(load_settings(config), engine)) as client:
        for tok in filter(None, (admin, cat_admin)):
            for name in ("status.csv", "holders.csv"):
                r = client.get(f"/api/v1/tenants/contoso/export/{name}", headers={"Authorization": f"Bearer {tok}"})
                assert r.status_code == 200, r.text
                for row in list(csv.reader(io.StringIO(r.text)))[1:]:
                    for cell in row:
                        checked += 1
                        assert not cell.startswith(FORMULA_PREFIXES) or _number(cell), cell
                        if cell.startswith("'"):
                            assert cell[1:].startswith(FORMULA_PREFIXES)  # the ' was added, nothing else changed
    assert checked > 0
    ledger.fuzzed("CSV export cells", checked)


def _number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False
