"""End to end through the command line: ``import enrollments`` and ``catalog remove-learner``."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from licsync import db
from licsync.cli import main
from tests.catalogs.conftest import TENANT, add_users, row, write_csv
from tests.conftest import write_config

NOW = "2026-03-01T12:00:00Z"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LICSYNC_TEST_CLI_SECRET", "s3cret")
    url = f"sqlite:///{tmp_path}/cli.db"
    engine = db.get_engine(url)
    db.upgrade(engine)
    add_users(engine, ["u1", "u2", "u3"])
    return write_config(
        tmp_path / "licsync.toml",
        {
            "database": {"url": url},
            "seats": {"mass_free_fraction": 1.0},
            "tenant": [
                {"name": TENANT, "tenant_id": "t", "client_id": "c", "client_secret": "env:LICSYNC_TEST_CLI_SECRET"}
            ],
        },
    )


def licsync(config: Path, *args: str) -> None:
    main(["--config", str(config), "--now", NOW, *args])


def test_import_then_replace_then_remove_learner(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write_csv(
        tmp_path / "e.csv",
        [row("u1", "c1"), row("u2", "c1"), row("u2", "k1", catalog="cat2"), row("u3", "c1", role="admin")],
    )
    licsync(config, "import", "enrollments", "--tenant", TENANT, str(f), "--json")
    summary = orjson.loads(capsys.readouterr().out)
    assert (summary["rows"], summary["seats_taken"], summary["admins_added"]) == (4, 2, 1)

    licsync(config, "import", "enrollments", "--tenant", TENANT, str(f))
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "imported 4 rows from e.csv" in out and "seats +0 −0" in out

    g = write_csv(tmp_path / "g.csv", [row("u2", "c1"), row("u2", "k1", catalog="cat2")])
    licsync(config, "import", "enrollments", "--tenant", TENANT, str(g), "--replace", "--json")
    summary = orjson.loads(capsys.readouterr().out)
    assert (summary["enrollments_removed"], summary["admins_removed"], summary["seats_freed"]) == (1, 1, 1)

    licsync(config, "catalog", "remove-learner", "--tenant", TENANT, "--catalog", "cat1", "u2")
    assert "seat unchanged" in capsys.readouterr().out  # u2 still trains in cat2
    licsync(config, "catalog", "remove-learner", "--tenant", TENANT, "--catalog", "cat2", "u2", "--json")
    result = orjson.loads(capsys.readouterr().out)
    assert (result["seat_freed"], result["reason"]) == (True, "removed_from_learner_list")


def test_bad_file_exits_65_with_line_numbers(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_csv(tmp_path / "bad.csv", [row("u1"), row("u2", role="boss"), row("u3", enrolled="yesterday")])
    with pytest.raises(SystemExit) as exit_:
        licsync(config, "import", "enrollments", "--tenant", TENANT, str(f))
    assert exit_.value.code == 65
    err = capsys.readouterr().err
    assert "licsync: error: 2 problem(s) in the file; nothing was imported" in err
    assert "  line 3: role 'boss' is not one of learner, admin" in err
    assert "  line 4: enrolled_at 'yesterday' is not an ISO-8601 date or date-time" in err


def test_errors_are_one_clear_line(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        licsync(config, "catalog", "remove-learner", "--tenant", TENANT, "--catalog", "nope", "u1")
    assert exit_.value.code == 65
    assert capsys.readouterr().err == "licsync: error: tenant contoso has no catalog 'nope'\n"
    with pytest.raises(SystemExit) as exit_:
        licsync(config, "import", "enrollments", "--tenant", "fabrikam", str(tmp_path / "x.csv"))
    assert exit_.value.code == 78
    assert "unknown tenant 'fabrikam'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        licsync(config, "import", "enrollments", "--tenant", TENANT, str(tmp_path / "missing.csv"))
    assert exit_.value.code == 65
    assert "cannot read" in capsys.readouterr().err
