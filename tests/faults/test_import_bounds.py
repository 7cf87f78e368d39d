"""Issue 18 item 4: an enrollment import's memory does not grow with the file. A file of invalid lines
keeps the first 50 problems and counts the rest; a file naming more catalogs or courses than
``[imports] max_catalogs`` / ``max_courses`` is refused as soon as the reader meets one too many,
and the database is unchanged.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from licsync.catalogs.csv_import import HEADER, MAX_PROBLEMS
from licsync.config import Settings
from licsync.db.models import Catalog, Course
from licsync.errors import InputError
from tests.catalogs.conftest import TENANT, row, run_import
from tests.daemon.conftest import cli, free_port
from tests.security.server import config


def _settings(**imports: int) -> Settings:
    return Settings.model_validate({"tenant": [{"name": TENANT, "tenant_id": "t", "client_id": "c",
                                                "client_secret": "env:LICSYNC_X"}], "imports": imports})


def _bad_file(path: Path, lines: int) -> Path:
    with path.open("w", encoding="utf-8") as f:
        f.write(",".join(HEADER) + "\n")
        for i in range(lines):
            f.write(f"cat1,Sales,c1,Course,published,u{i},u{i}@x.example,learner,not-a-date,\n")
    return path


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as c:
        return (c.execute(select(func.count()).select_from(Catalog)).scalar_one(),
                c.execute(select(func.count()).select_from(Course)).scalar_one())


def test_problems_kept_are_bounded_and_counted(sqlite_engine: Engine, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LICSYNC_X", "x")
    path = _bad_file(tmp_path / "bad.csv", 60_000)
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as exc:
            run_import(sqlite_engine, _settings(), path)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(exc.value.problems) == MAX_PROBLEMS
    assert str(exc.value).startswith("60000 problem(s) in the file (the first 50 below)")
    assert exc.value.problems[0].startswith("line 2: ")
    assert peak < 8 * 1024 * 1024, peak  # 60,000 kept messages alone were ~12 MB
    assert _counts(sqlite_engine) == (0, 0)


@pytest.mark.parametrize(("limit", "make", "what"), [
    ({"max_catalogs": 100}, lambda i: row("u1", f"c{i}", catalog=f"cat{i}", catalog_name=f"Cat {i}"), "catalogs"),
    ({"max_courses": 100}, lambda i: row("u1", f"c{i}"), "courses"),
])
def test_too_many_catalogs_or_courses_are_refused(sqlite_engine: Engine, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, limit: dict[str, int],
                                                  make: object, what: str) -> None:
    from tests.catalogs.conftest import write_csv

    monkeypatch.setenv("LICSYNC_X", "x")
    path = write_csv(tmp_path / "many.csv", [make(i) for i in range(101)])  # type: ignore[operator]
    with pytest.raises(InputError, match=rf"line 102: the file names more than 100 {what} \(\[imports\] max_{what}\)"):
        run_import(sqlite_engine, _settings(**limit), path)
    assert _counts(sqlite_engine) == (0, 0)
    run_import(sqlite_engine, _settings(**limit), write_csv(tmp_path / "ok.csv", [make(i) for i in range(100)]))
    assert _counts(sqlite_engine)[0 if what == "catalogs" else 1] == 100


def test_the_cli_prints_the_first_50_and_the_count(tmp_path: Path) -> None:
    cfg = config(tmp_path, free_port())
    r = cli(cfg, "import", "enrollments", "--tenant", "contoso", str(_bad_file(tmp_path / "bad.csv", 500)))
    assert r.returncode != 0
    lines = r.stderr.splitlines()
    assert lines[0] == "licsync: error: 500 problem(s) in the file (the first 50 below); nothing was imported"
    assert len([ln for ln in lines if ln.startswith("  line ")]) == 50
