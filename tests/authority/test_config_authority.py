"""``[authority]`` in the typed configuration: https only (plain http on loopback), files that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from licsync.config import load_settings
from licsync.errors import ConfigError


def test_authority_section(tmp_path: Path) -> None:
    cfg = tmp_path / "licsync.toml"
    cfg.write_text('[authority]\nurl = "https://activation.vendor.example/"\n', encoding="utf-8")
    s = load_settings(cfg, environ={})
    assert s.authority.url == "https://activation.vendor.example" and s.notifications.forecast_days == 30
    assert load_settings(cfg, environ={"LICSYNC_AUTHORITY__URL": "http://127.0.0.1:8443"}).authority.url
    for env, needle in (({"LICSYNC_AUTHORITY__URL": "http://activation.vendor.example"}, "https"),
                        ({"LICSYNC_AUTHORITY__CA_BUNDLE": str(tmp_path / "none.pem")}, "no such file"),
                        ({"LICSYNC_NOTIFICATIONS__FORECAST_DAYS": "-1"}, "(?i)forecast_days")):
        with pytest.raises(ConfigError, match=needle):
            load_settings(cfg, environ=env)
    assert load_settings(tmp_path / "absent.toml", environ={}, required=False).authority.url is None
