"""Configuration: the contract's TOML, environment overrides, and clear refusals (exit 78)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from licsync.cli import main
from licsync.config import load_settings, parse_duration
from licsync.errors import ConfigError
from tests.conftest import write_config

SECRET = "s3cr3t-Value-That-Must-Not-Leak"


def tenant(**over: Any) -> dict[str, Any]:
    t = {
        "name": "contoso",
        "tenant_id": "11111111-2222-3333-4444-555555555555",
        "client_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "client_secret": "env:CONTOSO_SECRET",
        "admins": ["it-admin@contoso.com"],
    }
    t.update(over)
    return {k: v for k, v in t.items() if v is not None}


@pytest.fixture(autouse=True)
def _secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTOSO_SECRET", SECRET)
    for k in list(__import__("os").environ):
        if k.startswith("LICSYNC_") and not k.startswith("LICSYNC_TEST"):
            monkeypatch.delenv(k)


def test_contract_example_loads(tmp_path: Path) -> None:
    p = write_config(tmp_path / "c.toml", {
        "database": {"url": "sqlite:///x.db"},
        "vendor": {"public_key": "abc"},
        "tenant": [tenant(), tenant(name="fabrikam", client_secret="file:/dev/null")],
        "seats": {"grace_days": 14, "mass_free_threshold": 500, "mass_free_fraction": 0.1},
        "notifications": {"transport": "smtp", "sender": "licsync@contoso.com", "smtp_host": "127.0.0.1",
                          "smtp_port": 25, "thresholds": [80, 90, 100]},
        "api": {"listen": "127.0.0.1:8080"},
        "schedule": {"sync_interval": "15m", "full_resync_interval": "24h"},
    })
    s = load_settings(p)
    assert [t.name for t in s.tenant] == ["contoso", "fabrikam"]
    assert s.get_tenant("contoso").client_secret.resolve() == SECRET
    assert s.schedule.sync_interval == timedelta(minutes=15)
    assert s.api.port == 8080
    assert SECRET not in repr(s)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    p = write_config(tmp_path / "c.toml", {"tenant": [tenant()], "seats": {"grace_days": 14}})
    env = {"CONTOSO_SECRET": SECRET, "LICSYNC_SEATS__GRACE_DAYS": "7", "LICSYNC_DATABASE_URL": "sqlite:///e.db",
           "LICSYNC_TENANT__CONTOSO__ADMINS": '["a@x.com", "b@x.com"]', "LICSYNC_NOTIFICATIONS__THRESHOLDS": "[50]"}
    s = load_settings(p, environ=env)
    assert s.seats.grace_days == 7
    assert s.database.url == "sqlite:///e.db"
    assert s.get_tenant("contoso").admins == ["a@x.com", "b@x.com"]
    assert s.notifications.thresholds == [50]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"tenant": [tenant(tenant_id=None)]}, "tenant[0:contoso].tenant_id"),
        ({"tenant": [tenant(client_secret=SECRET)]}, "tenant[0:contoso].client_secret"),
        ({"tenant": [tenant(authority="http://login.example.com")]}, "tenant[0:contoso].authority"),
        ({"tenant": [tenant(client_secret=None)]}, "needs client_secret"),
        ({"tenant": [tenant(), tenant()]}, "used twice"),
        ({"seats": {"grace_days": -1}}, "seats.grace_days"),
        ({"schedule": {"sync_interval": "soon"}}, "schedule.sync_interval"),
        ({"database": {"url": "mysql://x"}}, "database.url"),
        ({"tenant": [tenant(client_secret="env:NOT_SET_ANYWHERE")]}, "NOT_SET_ANYWHERE is not set"),
        ({"tenant": [tenant(bogus=1)]}, "tenant[0:contoso].bogus"),
        ({"notifications": {"transport": "smtp"}}, "needs a sender"),
    ],
)
def test_bad_config_names_the_key_and_exits_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: dict[str, Any], needle: str
) -> None:
    p = write_config(tmp_path / "bad.toml", data)
    with pytest.raises(ConfigError):
        load_settings(p)
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(p), "status", "--tenant", "contoso"])
    assert exc.value.code == 78
    err = capsys.readouterr().err
    assert needle in err
    assert err.count("\n") == 1, err  # one clear line
    assert SECRET not in err


def test_broken_toml_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "broken.toml"
    p.write_text("[[tenant]\nname = ", encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(p), "db", "upgrade"])
    assert exc.value.code == 78
    assert "not valid TOML" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(tmp_path / "nope.toml"), "db", "upgrade"])
    assert exc.value.code == 78
    assert "not found" in capsys.readouterr().err


def test_console_script_reports_bad_config_in_one_line(tmp_path: Path) -> None:
    p = write_config(tmp_path / "bad.toml", {"tenant": [tenant(client_secret=SECRET)]})
    r = subprocess.run([sys.executable, "-m", "licsync", "--config", str(p), "db", "upgrade"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 78
    assert r.stderr.startswith("licsync: error: ") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr and SECRET not in r.stderr


@pytest.mark.parametrize(("text", "seconds"), [("15m", 900), ("24h", 86400), ("30s", 30), ("1d", 86400), (90, 90)])
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("name", ["licsync.example.toml", "licsync.multi-tenant.toml"])
def test_shipped_example_configs_are_valid(name: str) -> None:
    """The examples in config/ are what admins copy: they must pass validation as shipped."""
    import tomllib

    from licsync.config import Settings

    data = tomllib.loads((Path(__file__).parent.parent / "config" / name).read_text(encoding="utf-8"))
    s = Settings.model_validate(data)
    assert s.tenant and all(t.admins for t in s.tenant)
