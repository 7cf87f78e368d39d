"""The configuration as an IT admin meets it through the CLI: relative paths follow the file, every
problem is listed with where it came from, and a missing file says where licsync looked."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.cli.conftest import REPO, licsync

TENANT = """
[[tenant]]
name = "contoso"
tenant_id = "11111111-2222-4333-8444-555555555555"
client_id = "66666666-7777-4888-9999-000000000001"
client_secret = "file:secrets/contoso"
"""


def test_a_relative_sqlite_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    srv, elsewhere = tmp_path / "srv" / "licsync", tmp_path / "home"
    (srv / "secrets").mkdir(parents=True)
    elsewhere.mkdir()
    (srv / "secrets" / "contoso").write_text("s3cret\n")
    (srv / "licsync.toml").write_text('[database]\nurl = "sqlite:///data.db"\n' + TENANT)
    config = str(srv / "licsync.toml")

    up = licsync("--config", config, "db", "upgrade", cwd=elsewhere)
    assert up.code == 0, up.err
    assert (srv / "data.db").is_file() and not (elsewhere / "data.db").exists()
    # from yet another directory, with a relative --config: the same database, already migrated
    status = licsync("--config", "srv/licsync/licsync.toml", "status", "--tenant", "contoso", "--json", cwd=tmp_path)
    assert status.code == 0, status.err
    assert '"tenant": "contoso"' in status.out
    assert not (tmp_path / "data.db").exists()


def test_every_problem_is_listed_with_its_file_key_or_variable(tmp_path: Path) -> None:
    (tmp_path / "licsync.toml").write_text(
        '[seats]\ngrace_dayz = 3\n[[tenant]]\nname = "contoso"\ntenant_id = "11111111-2222-4333-8444-555555555555"\n'
        'clientid = "x"\nclient_secret = "env:X"\n'
    )
    r = licsync("status", "--tenant", "contoso", cwd=tmp_path,
                env={"X": "y", "LICSYNC_SEATS__GRACE_DAYS": "-3"})
    assert r.code == 78, r.err
    lines = r.err.splitlines()
    assert lines[0] == "licsync: error: 4 problems in the configuration:", r.err
    body = "\n".join(lines[1:])
    assert "licsync.toml: seats.grace_dayz: unknown key" in body
    assert "licsync.toml: tenant[0:contoso].clientid: unknown key" in body
    assert "licsync.toml: tenant[0:contoso].client_id: Field required" in body
    assert "LICSYNC_SEATS__GRACE_DAYS (environment): Input should be greater than or equal to 0" in body


def test_the_example_placeholders_are_refused(tmp_path: Path) -> None:
    shutil.copy(REPO / "config" / "licsync.example.toml", tmp_path / "licsync.toml")
    r = licsync("status", "--tenant", "contoso", cwd=tmp_path, env={"CONTOSO_SECRET": "x"})
    assert r.code == 78, r.err
    assert "vendor.public_key: still the example's placeholder" in r.err
    assert "tenant[0:contoso].tenant_id: still the example's all-zero GUID" in r.err
    assert "tenant[0:contoso].client_id: still the example's all-zero GUID" in r.err


def test_no_config_file_says_where_it_looked(tmp_path: Path) -> None:
    r = licsync("status", "--tenant", "contoso", cwd=tmp_path)
    assert r.code == 78, r.err
    assert r.err.strip() == (f"licsync: error: unknown tenant 'contoso': no configuration file found (looked for "
                             f"{tmp_path.resolve()}/licsync.toml (LICSYNC_CONFIG is not set)); pass --config PATH")


def test_a_malformed_database_url_names_the_key_and_never_the_password(tmp_path: Path) -> None:
    for url, problem in [("postgresql+psycopg://licsync:hunter2@db:54x2/licsync", "is the port a number?"),
                         ("postgresql+mysqldb://licsync:hunter2@db/licsync", "unknown database driver")]:
        (tmp_path / "licsync.toml").write_text(f'[database]\nurl = "{url}"\n')
        r = licsync("db", "upgrade", cwd=tmp_path)
        assert r.code == 78, r.err
        assert "licsync.toml: database.url: " in r.err and problem in r.err, r.err
        assert "hunter2" not in r.err
        env = licsync("db", "upgrade", cwd=tmp_path, env={"LICSYNC_DATABASE__URL": url})
        assert env.code == 78 and "LICSYNC_DATABASE__URL (environment): " in env.err and "hunter2" not in env.err
