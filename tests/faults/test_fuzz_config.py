"""Configuration fuzzing: random TOML documents (shaped like the real one, and broken ones), random
bytes and random ``LICSYNC_…`` environment. Every refusal is a ConfigError: through the CLI, exit 78
and exactly one line on stderr — never a traceback, never "internal error", never a secret echoed.
"""

from __future__ import annotations

import os
import string
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from licsync.cli import main
from licsync.config import Settings, load_settings
from licsync.errors import EXIT_CONFIG, ConfigError
from tests.faults import ledger
from tests.faults.world import SOAK

EXAMPLES = 1500 if SOAK else 120
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not SOAK,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SECRET_KEYS = ("client_secret", "smtp_password", "lms_api_key", "certificate_password")
TENANT_KEYS = ["name", "tenant_id", "client_id", *SECRET_KEYS[:1], "certificate", "authority", "graph_url",
               "ca_bundle", "admins", "catalog_admins", "page_size", "timeout", "max_retries", "max_retry_after",
               "api_audience", "lms_url", "lms_api_key", "certificate_password"]
SECTIONS: dict[str, list[str]] = {
    "database": ["url"], "vendor": ["public_key"],
    "seats": ["grace_days", "mass_free_threshold", "mass_free_fraction"],
    "notifications": ["transport", "sender", "smtp_host", "smtp_port", "smtp_tls", "smtp_user", "smtp_password",
                      "thresholds", "max_attempts"],
    "api": ["listen"], "schedule": ["sync_interval", "full_resync_interval"], "roles": ["observer"],
}

words = st.sampled_from(["", "contoso", "env:NOPE", "file:/nonexistent", "file:/dev/null", "sqlite:///x.db",
                         "https://login.example", "http://127.0.0.1:1", "15m", "24h", "-1s", "0", "smtp", "graph",
                         "none", "127.0.0.1:8080", "[::1]:80", "a@b", "s3cr3t-in-clear-value", "\x00", "é"])
scalar = st.one_of(
    words, st.text(max_size=30), st.integers(-2**63, 2**63 - 1), st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
    st.dates(), st.times(),
)
value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                     max_leaves=8)


def table(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=10)), value, max_size=len(keys) + 1)


document = st.fixed_dictionaries({}, optional={
    **{name: st.one_of(table(keys), value) for name, keys in SECTIONS.items()},
    "tenant": st.one_of(st.lists(table(TENANT_KEYS), max_size=3), value),
    "junk": value,
})


def mutate(text: str, data: st.DataObject) -> bytes:
    """Valid TOML, or a broken variant of it: cut, a byte changed, or bytes inserted."""
    raw = text.encode("utf-8")
    how = data.draw(st.sampled_from(["as is", "as is", "cut", "byte", "insert"]))
    if how == "as is" or not raw:
        return raw
    at = data.draw(st.integers(0, len(raw) - 1))
    if how == "cut":
        return raw[:at]
    if how == "byte":
        return raw[:at] + bytes([data.draw(st.integers(0, 255))]) + raw[at + 1:]
    return raw[:at] + data.draw(st.binary(min_size=1, max_size=8)) + raw[at:]


def secrets_in(doc: Any) -> list[str]:
    """Clear-text values put under a secret's key (which must never be echoed back)."""
    found: list[str] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in SECRET_KEYS and isinstance(v, str) and len(v) >= 8 and not v.startswith(("env:", "file:")):
                found.append(v)
            found += secrets_in(v)
    elif isinstance(doc, list):
        for v in doc:
            found += secrets_in(v)
    return found


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in list(os.environ):
        if k.startswith("LICSYNC_") and not k.startswith("LICSYNC_TEST") and k != "LICSYNC_SOAK":
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)  # a default sqlite:///licsync.db lands here


@FUZZ
@given(doc=document, data=st.data())
def test_random_config_files_are_refused_with_one_line_and_exit_78(doc: dict[str, Any], data: st.DataObject,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        text = repr(doc)  # not representable as TOML: the text itself is the fuzz input
    raw = mutate(text, data)
    ledger.fuzzed("config files")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "licsync.toml"
        path.write_bytes(raw)
        capsys.readouterr()
        try:
            main(["--config", str(path), "status", "--tenant", "contoso"])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        _out, err = capsys.readouterr()
    # Even a valid configuration ends here: the fresh database has no schema (also a ConfigError).
    assert code == EXIT_CONFIG, (code, err, raw[:300])
    lines = err.splitlines()
    # One line, or a heading line and one indented line per problem (every problem is listed).
    assert lines and lines[0].startswith("licsync: error: "), err
    assert len(lines) == 1 or (lines[0].endswith("problems in the configuration:")
                               and all(line.startswith("  ") for line in lines[1:])), err
    assert "Traceback" not in err and "internal error" not in err
    for secret in secrets_in(doc):
        assert secret not in err, "a secret given in clear was echoed back"


env_name = st.builds(lambda parts: "LICSYNC_" + "__".join(parts),
                     st.lists(st.one_of(st.sampled_from(["DATABASE", "TENANT", "CONTOSO", "URL", "SEATS",
                                                         "GRACE_DAYS", "NOTIFICATIONS", "API", "LISTEN",
                                                         "CLIENT_SECRET", "DATABASE_URL", "ROLES", "X"]),
                                        st.text(string.ascii_uppercase + "_", min_size=1, max_size=8)),
                              min_size=1, max_size=4))
env_value = st.one_of(words, st.text(max_size=20).filter(lambda s: "\x00" not in s),
                      st.sampled_from(["[1, 2]", "{a = 1}", "[", "{", "[[x]]", "['a', 'b']"]))


@FUZZ
@given(file_doc=st.one_of(st.just({}), document), environ=st.dictionaries(env_name, env_value, max_size=4))
def test_random_environment_overrides_are_config_errors(file_doc: dict[str, Any], environ: dict[str, str]) -> None:
    ledger.fuzzed("config environment")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "licsync.toml"
        try:
            path.write_text(tomli_w.dumps(file_doc), encoding="utf-8")
        except (TypeError, ValueError):
            path.write_text("", encoding="utf-8")
        try:
            assert isinstance(load_settings(path, environ=environ), Settings)
        except ConfigError as exc:
            assert str(exc) and "\n" not in str(exc)
