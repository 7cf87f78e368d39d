"""SECURITY.md's "Limits" table and the typed configuration agree, and a bad limit names its key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from licsync.config import ApiConfig, ImportsConfig, load_settings
from licsync.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_every_limit_key_in_security_md_exists_and_every_api_key_is_documented() -> None:
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    table = text[text.index("## Limits"):]
    documented = set(re.findall(r"`\[(api|imports)\] (\w+)`", table))
    fields = {("api", k) for k in ApiConfig.model_fields} | {("imports", k) for k in ImportsConfig.model_fields}
    assert documented - fields == set()
    assert fields - {("api", "listen")} <= documented


@pytest.mark.parametrize(("key", "value", "why"), [
    ("trusted_proxies", ["10.0.0.0/33"], "not an IP address or network"),
    ("public_url", "https://x.example/path", "no path"),
    ("max_body_statements", "lots", "not a size"),
    ("header_timeout", "0s", "positive duration"),
    ("max_connections", 0, "greater than or equal to 1"),
    ("metrics_token", "in-clear", "by reference"),
])
def test_a_bad_limit_names_its_key(tmp_path: Path, key: str, value: object, why: str) -> None:
    import tomli_w

    cfg = tmp_path / "licsync.toml"
    cfg.write_text(tomli_w.dumps({"api": {key: value}}))
    with pytest.raises(ConfigError, match=rf"api\.{key}(\[0\])?: .*{why}") as exc:
        load_settings(cfg, environ={})
    assert "in-clear" not in str(exc.value)


def test_limits_from_the_environment(tmp_path: Path) -> None:
    s = load_settings(None, environ={"LICSYNC_API__MAX_CONNECTIONS": "2000", "LICSYNC_API__MAX_BODY_FORM": "4KiB",
                                     "LICSYNC_API__TRUSTED_PROXIES": '["10.0.0.1"]',
                                     "LICSYNC_IMPORTS__MAX_CATALOGS": "50"}, required=False)
    assert (s.api.max_connections, s.api.max_body_form, s.api.trusted_proxies) == (2000, 4096, ["10.0.0.1/32"])
    assert s.imports.max_catalogs == 50
