"""Subscription-key fuzzing through activation into SQLite and PostgreSQL (which enforces column
widths and refuses NUL characters): random text, damaged real keys, and payloads the vendor really
signed but with hostile values (extreme dates and offsets, NULs, very long names, odd extras).

Every key is activated or refused with an InputError; a refused key writes nothing (subscription,
audit log, grace, outbox exactly as before); never any other exception.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine

from licsync import reseat
from licsync.cli import main
from licsync.config import Settings
from licsync.db import session_scope
from licsync.errors import InputError
from licsync.subscriptions import keys, registry
from licsync.subscriptions.terms import Terms
from tests.conftest import write_config
from tests.faults import ledger
from tests.faults.world import NOW, SOAK

EXAMPLES = 600 if SOAK else 60
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not SOAK,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TABLES = ("subscription", "audit_log", "grace_state", "outbox", "notification_mark", "ledger_snapshot")
PRIVATE, PUBLIC = keys.generate_keypair()
VALID = keys.issue(PRIVATE, Terms(id="SUB-1", customer="Contoso", seats=10,
                                  starts_at=datetime(2026, 1, 1, tzinfo=UTC), ends_at=datetime(2027, 1, 1, tzinfo=UTC),
                                  issued_at=datetime(2025, 12, 1, tzinfo=UTC)))


def sign(payload: dict[str, Any]) -> str:
    """What a vendor's ``subscription issue`` would print for this payload, whatever is in it."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")

    key = keys.load_private_key(PRIVATE)
    assert isinstance(key, Ed25519PrivateKey)
    signed = f"LSK1.{b64(json.dumps(payload, sort_keys=True, separators=(',', ':'), ensure_ascii=False).encode())}"
    return f"{signed}.{b64(key.sign(signed.encode('ascii')))}"


offsets = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60 - 59, 23 * 60 + 59))
instants = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23), timezones=offsets),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),  # naive
    st.sampled_from([datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
                     datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5)))]),
).map(lambda d: d.isoformat())
names = st.one_of(st.text(max_size=20), st.text(min_size=120, max_size=300), st.sampled_from(["", "\x00", "a\x00b"]))
json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=10),
                                    st.floats(allow_nan=False)),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                          max_leaves=6)


def mostly(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid three times in four: a payload must get past its other fields for a hostile one to matter."""
    return st.one_of(valid, valid, valid, hostile)


good_date = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=offsets)
payloads = st.fixed_dictionaries({
    "id": mostly(st.just("SUB-FUZZ"), names), "customer": mostly(st.just("Contoso"), names),
    "seats": mostly(st.integers(0, 10_000_000), st.one_of(st.integers(), json_value)),
    "starts_at": mostly(good_date.map(lambda d: d.isoformat()), instants),
    "ends_at": mostly(st.just("2099-01-01T00:00:00+00:00"), instants),
    "issued_at": mostly(good_date.map(lambda d: d.isoformat()), instants),
    "policy": mostly(st.just("enrollment"), st.sampled_from(["role", "live_enrollment", "first_access", "x"])),
    "overage": mostly(st.just("grace"), st.sampled_from(["block", "bill", "tiered", "x"])),
    "grace_days": mostly(st.integers(0, 365), st.one_of(st.integers(), json_value)),
    "extras": mostly(st.just({}), st.one_of(st.dictionaries(st.sampled_from(["reuse_limit", "tiers", "pools", "x"]),
                                                            json_value, max_size=3), json_value)),
}, optional={"unknown": json_value})


def snapshot(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as c:
        return {t: sorted(map(repr, c.execute(text(f"SELECT * FROM {t}")).all())) for t in TABLES}  # noqa: S608


@pytest.fixture
def vendor_db(engine: Engine) -> Iterator[tuple[Engine, Settings]]:
    yield engine, Settings.model_validate({"vendor": {"public_key": PUBLIC}, "tenant": [
        {"name": "contoso", "tenant_id": "t", "client_id": "c", "client_secret": "file:/dev/null",
         "admins": ["it@contoso.example"]}]})


def activate(engine: Engine, settings: Settings, key: str) -> InputError | None:
    """What ``licsync activate`` does; the InputError it refused the key with, or None."""
    before = snapshot(engine)
    try:
        with session_scope(engine) as s:
            result = registry.activate(s, "contoso", key, PUBLIC, NOW, actor="fuzz")
            reseat.after_activation(s, settings, result, NOW)
    except InputError as exc:
        assert str(exc).startswith("subscription key refused") or "subscription" in str(exc), exc
        assert snapshot(engine) == before, "a refused key wrote something"
        return exc
    return None


@FUZZ
@given(payload=payloads)
def test_signed_hostile_payloads_are_activated_or_refused_cleanly(vendor_db: tuple[Engine, Settings],
                                                                  payload: dict[str, Any]) -> None:
    engine, settings = vendor_db
    ledger.fuzzed("subscription keys (signed hostile payloads)")
    refused = activate(engine, settings, sign(payload))
    if refused is None:
        with engine.connect() as c:
            row = c.execute(text("SELECT customer, state, tenant FROM subscription WHERE id = :i"),
                            {"i": payload["id"]}).one()
        assert row == (payload["customer"], "active", "contoso")


@st.composite
def damaged(draw: st.DrawFn) -> str:
    key = VALID
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(key)))
        how = draw(st.sampled_from(["flip", "cut", "insert", "drop", "wrap", "quote", "swap"]))
        if how == "flip" and at < len(key):
            key = key[:at] + draw(st.sampled_from("AaZz09-_.=+/")) + key[at + 1:]
        elif how == "cut":
            key = key[:at]
        elif how == "insert":
            key = key[:at] + draw(st.text(max_size=4)) + key[at:]
        elif how == "drop":
            key = key[:at] + key[at + draw(st.integers(1, 5)):]
        elif how == "wrap":
            key = key[:at] + draw(st.sampled_from(["\n", "\r\n> ", " ", "\t"])) + key[at:]
        elif how == "quote":
            key = draw(st.sampled_from(['"', "'", "`", "<"])) + key + draw(st.sampled_from(['"', "'", "`", ">"]))
        else:
            head, _, rest = key.partition(".")
            payload, _, sig = rest.partition(".")
            key = f"{head}.{sig}.{payload}"
    return key


@FUZZ
@given(key=st.one_of(damaged(), st.text(max_size=300)))
def test_damaged_or_random_keys_are_refused_unless_only_the_wrapping_changed(
        vendor_db: tuple[Engine, Settings], key: str) -> None:
    engine, settings = vendor_db
    ledger.fuzzed("subscription keys (damaged or random text)")
    refused = activate(engine, settings, key)
    if refused is None:  # email quoting, line breaks and surrounding quotes are not damage
        assert keys.normalize(key) == VALID


@pytest.mark.parametrize("key", ["", "LSK1.", "LSK2.a.b", VALID[:-3], VALID.replace(".", "..", 1), "x" * 20_000])
def test_the_cli_refuses_a_bad_key_in_one_line(tmp_path: Any, db_url: str, engine: Engine, key: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "c.toml", {"database": {"url": db_url}, "vendor": {"public_key": PUBLIC},
                                                "tenant": [{"name": "contoso", "tenant_id": "t", "client_id": "c",
                                                            "client_secret": "file:/dev/null"}]})
    before = snapshot(engine)
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(config), "activate", "--tenant", "contoso", key])
    err = capsys.readouterr().err
    assert exit_.value.code == 65 and err.startswith("licsync: error: subscription key refused"), err
    assert "Traceback" not in err and len(err.splitlines()) == 1 and len(err) < 400, err  # never echoes the key
    assert snapshot(engine) == before
