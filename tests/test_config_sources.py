"""licsync.config_sources: relative paths follow the configuration file; the trail of each value."""

from __future__ import annotations

from pathlib import Path

import pytest

from licsync.config import load_settings
from licsync.errors import ConfigError


def test_relative_paths_in_the_file_are_relative_to_its_directory(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "etc"
    (conf / "pki").mkdir(parents=True)
    (conf / "pki" / "cert.pem").write_text("x")
    (conf / "pki" / "ca.pem").write_text("x")
    (conf / "lms.key").write_text("k")
    (conf / "smtp.pw").write_text("p")
    (conf / "licsync.toml").write_text(
        '[database]\nurl = "sqlite:///db/licsync.db?timeout=5"\n'
        '[notifications]\nsmtp_password = "file:smtp.pw"\n'
        '[[tenant]]\nname = "contoso"\ntenant_id = "t"\nclient_id = "c"\ncertificate = "pki/cert.pem"\n'
        'ca_bundle = "pki/ca.pem"\nlms_api_key = "file:lms.key"\n'
    )
    monkeypatch.chdir(tmp_path.parent)
    s = load_settings(Path(tmp_path.name) / "etc" / "licsync.toml", environ={})
    assert s.database.url == f"sqlite:///{conf}/db/licsync.db?timeout=5"
    t = s.get_tenant("contoso")
    assert t.certificate == conf / "pki" / "cert.pem" and t.ca_bundle == conf / "pki" / "ca.pem"
    assert t.lms_api_key == f"file:{conf}/lms.key" and t.lms_api_key.resolve() == "k"
    assert s.notifications.smtp_password == f"file:{conf}/smtp.pw"


def test_absolute_and_memory_paths_and_environment_values_stay_as_given(tmp_path: Path) -> None:
    (tmp_path / "licsync.toml").write_text('[database]\nurl = "sqlite:////var/lib/licsync.db"\n')
    assert load_settings(tmp_path / "licsync.toml", environ={}).database.url == "sqlite:////var/lib/licsync.db"
    (tmp_path / "licsync.toml").write_text('[database]\nurl = "sqlite:///:memory:"\n')
    assert load_settings(tmp_path / "licsync.toml", environ={}).database.url == "sqlite:///:memory:"
    env = {"LICSYNC_DATABASE__URL": "sqlite:///here.db"}
    assert load_settings(tmp_path / "licsync.toml", environ=env).database.url == "sqlite:///here.db"


def test_problems_carry_their_origin(tmp_path: Path) -> None:
    (tmp_path / "licsync.toml").write_text("[seats]\ngrace_days = 3\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path / "licsync.toml", environ={"LICSYNC_SEATS__GRACE_DAY": "3"})
    assert str(exc.value) == "LICSYNC_SEATS__GRACE_DAY (environment): unknown key (misspelled? see the " \
                             "configuration reference in docs/configuration.md)"
