"""Signed keys: round trip, tampering, wrong signer, malformed text, copy-and-paste damage, keygen."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from licsync.errors import ConfigError, InputError
from licsync.subscriptions import keys
from licsync.subscriptions.keys import Terms

FUZZ = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_raw(private_pem: bytes, payload: bytes, version: str = "LSK1") -> str:
    """A correctly signed key around any payload bytes: reaches the checks behind the signature."""
    signed = f"{version}.{b64(payload)}"
    key = keys.load_private_key(private_pem)
    return f"{signed}.{b64(key.sign(signed.encode()))}"


def payload_of(key_text: str) -> dict[str, Any]:
    return json.loads(unb64(key_text.split(".")[1]))


# --------------------------------------------------------------------------- round trip


def test_round_trip_gives_equal_terms(vendor, make_terms) -> None:
    pem, pub = vendor
    terms = make_terms(policy="role", overage="block", grace_days=7,
                       extras={"pools": {"elearn": 100, "weclimb": 50}, "reuse_limit": 2, "tiers": [100, 200]})
    key = keys.issue(pem, terms)
    got = keys.verify(key, pub)
    assert got == terms
    assert hash(got) == hash(terms)
    assert got.extras["pools"]["elearn"] == 100
    assert got.extras["tiers"] == (100, 200)
    assert got.reuse_limit == 2
    assert key.startswith("LSK1.") and key.count(".") == 2 and "=" not in key
    assert keys.read_unverified(key) == terms


def test_payload_is_canonical_and_signature_stable(vendor, make_terms) -> None:
    pem, _ = vendor
    key = keys.issue(pem, make_terms())
    raw = unb64(key.split(".")[1])
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    assert keys.issue(pem, make_terms()) == key  # Ed25519 is deterministic: same terms, same key


def test_defaults_and_expiry_instant(vendor, make_terms) -> None:
    pem, pub = vendor
    terms = keys.verify(keys.issue(pem, make_terms()), pub)
    assert (terms.policy, terms.overage, terms.grace_days, terms.reuse_limit) == ("enrollment", "grace", 14, 3)
    assert terms.expires_at == terms.ends_at == at("2027-01-01T00:00:00Z")
    assert not terms.expired(at("2026-12-31T23:59:59.999999Z"))
    assert terms.expired(at("2027-01-01T00:00:00Z"))
    assert payload_of(keys.issue(pem, make_terms()))["ends_at"] == "2027-01-01T00:00:00Z"


def test_offsets_are_stored_as_utc(vendor, make_terms) -> None:
    pem, pub = vendor
    terms = make_terms(starts_at=datetime.fromisoformat("2026-01-01T02:00:00+02:00"))
    assert keys.verify(keys.issue(pem, terms), pub).starts_at == at("2026-01-01T00:00:00Z")


# --------------------------------------------------------------------------- tampering and signers


ALTERED = {
    "id": "SUB-002", "customer": "Fabrikam", "seats": 1000, "starts_at": "2025-01-01T00:00:00Z",
    "ends_at": "2030-01-01T00:00:00Z", "issued_at": "2026-06-01T00:00:00Z", "policy": "first_access",
    "overage": "bill", "grace_days": 365, "extras": {"reuse_limit": 99},
}


@pytest.mark.parametrize("field", sorted(ALTERED))
def test_tampering_any_field_is_refused(vendor, make_terms, field: str) -> None:
    pem, pub = vendor
    key = keys.issue(pem, make_terms())
    prefix, _payload, sig = key.split(".")
    data = payload_of(key)
    assert data[field] != ALTERED[field]
    data[field] = ALTERED[field]
    forged = f"{prefix}.{b64(keys.canonical_json(data))}.{sig}"
    assert keys.read_unverified(forged).to_payload()[field] == ALTERED[field]  # well-formed, only unsigned
    with pytest.raises(InputError, match="signed by another vendor key or altered"):
        keys.verify(forged, pub)


def test_tampering_signature_or_adding_a_field_is_refused(vendor, make_terms) -> None:
    pem, pub = vendor
    key = keys.issue(pem, make_terms())
    prefix, payload, sig = key.split(".")
    raw = bytearray(unb64(sig))
    raw[10] ^= 0x01
    with pytest.raises(InputError, match="altered"):
        keys.verify(f"{prefix}.{payload}.{b64(bytes(raw))}", pub)
    data = payload_of(key) | {"seats_bonus": 5}
    with pytest.raises(InputError, match="altered"):
        keys.verify(f"{prefix}.{b64(keys.canonical_json(data))}.{sig}", pub)


def test_key_from_another_vendor_is_refused(vendor, other_vendor, make_terms) -> None:
    key = keys.issue(other_vendor[0], make_terms())
    with pytest.raises(InputError, match="signed by another vendor key or altered") as info:
        keys.verify(key, vendor[1])
    assert "public_key" in str(info.value)


def test_relabelled_version_is_refused(vendor, make_terms) -> None:
    pem, pub = vendor
    key = keys.issue(pem, make_terms())
    with pytest.raises(InputError, match="key version LSK2 is not supported"):
        keys.verify("LSK2." + key.split(".", 1)[1], pub)
    with pytest.raises(InputError, match="version LSK2"):
        keys.verify(sign_raw(pem, b"{}", version="LSK2"), pub)


# --------------------------------------------------------------------------- malformed text


@pytest.mark.parametrize(("text", "reason"), [
    ("", "not a licsync subscription key"),
    ("hello world", "not a licsync subscription key"),
    ("lsk1.abc.def", "not a licsync subscription key"),
    ("LSK1.", "incomplete or damaged"),
    ("LSK1.abc", "incomplete or damaged"),
    ("LSK1.abc.def.ghi", "incomplete or damaged"),
    ("LSK1..sig", "incomplete or damaged"),
    ("LSK1.ab$c.def", "payload is not valid base64url"),
    ("LSK1.abcde.def", "payload is not valid base64url"),
    ("LSK1.abcd.de+f", "signature is not valid base64url"),
    ("LSK1.abcd.AAAA", "signature has the wrong length"),
    ("LSK1." + "A" * 20000, "far too long"),
])
def test_malformed_text_is_refused_with_a_reason(vendor, text: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        keys.verify(text, vendor[1])


@pytest.mark.parametrize(("payload", "reason"), [
    (b"not json", "payload is not valid JSON"),
    (b"\xff\xfe", "payload is not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b"{}", "missing field 'id'"),
])
def test_signed_but_malformed_payload_is_refused(vendor, payload: bytes, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        keys.verify(sign_raw(vendor[0], payload), vendor[1])


@pytest.mark.parametrize(("change", "reason"), [
    ({"seats": -1}, "seats must be a whole number"),
    ({"seats": True}, "seats must be a whole number"),
    ({"seats": 1.5}, "seats must be a whole number"),
    ({"seats": "100"}, "seats must be a whole number"),
    ({"ends_at": "2025-06-01T00:00:00Z"}, "ends_at .* must be after starts_at"),
    ({"ends_at": "2026-01-01T00:00:00Z"}, "must be after starts_at"),
    ({"starts_at": "2026-01-01T00:00:00"}, "starts_at must be a datetime with a time zone"),
    ({"issued_at": "yesterday"}, "issued_at is not an ISO-8601 datetime"),
    ({"issued_at": 12}, "issued_at is not an ISO-8601 datetime"),
    ({"policy": "everyone"}, "policy must be one of"),
    ({"overage": "ignore"}, "overage must be one of"),
    ({"grace_days": -1}, "grace_days must be"),
    ({"id": ""}, "id must be"),
    ({"id": "two words"}, "id must be"),
    ({"customer": None}, "customer must be text"),
    ({"extras": []}, "extras must be an object"),
    ({"extras": {"discount": 5}}, "unknown extra 'discount'"),
    ({"extras": {"tiers": [200, 100]}}, "extras.tiers must be increasing"),
    ({"extras": {"tiers": []}}, "extras.tiers must be increasing"),
    ({"extras": {"pools": {"e learn": 5}}}, "is not a pool name"),
    ({"extras": {"pools": {"elearn": -5}}}, "extras.pools.elearn"),
    ({"extras": {"reuse_limit": "3"}}, "extras.reuse_limit"),
    ({"rebate": 1}, "unknown field 'rebate'"),
])
def test_signed_payload_with_invalid_terms_is_refused(vendor, make_terms, change, reason) -> None:
    data = make_terms().to_payload() | change
    with pytest.raises(InputError, match=reason) as info:
        keys.verify(sign_raw(vendor[0], keys.canonical_json(data)), vendor[1])
    assert str(info.value).startswith("subscription key refused: ")
    assert info.value.problems


def test_missing_fields_are_all_named(vendor, make_terms) -> None:
    data = make_terms().to_payload()
    del data["seats"], data["policy"]
    with pytest.raises(InputError) as info:
        keys.verify(sign_raw(vendor[0], keys.canonical_json(data)), vendor[1])
    assert info.value.problems == ["missing field 'seats'", "missing field 'policy'"]


@FUZZ
@given(text=st.text(max_size=600))
def test_fuzz_arbitrary_text_only_ever_raises_input_error(vendor, text: str) -> None:
    with pytest.raises(InputError):
        keys.verify(text, vendor[1])


@FUZZ
@given(tail=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.= \n", max_size=400))
def test_fuzz_key_shaped_text_only_ever_raises_input_error(vendor, tail: str) -> None:
    with pytest.raises(InputError):
        keys.verify("LSK1." + tail, vendor[1])
    with pytest.raises(InputError):
        keys.read_unverified("LSK1." + tail)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(change=st.dictionaries(st.sampled_from([*keys.FIELDS, "other"]), JSON, max_size=4),
       drop=st.sets(st.sampled_from(keys.FIELDS), max_size=2))
def test_fuzz_signed_payloads_give_terms_or_input_error(vendor, make_terms, change, drop) -> None:
    data = make_terms().to_payload() | change
    for name in drop:
        data.pop(name, None)
    key = sign_raw(vendor[0], json.dumps(data).encode())
    try:
        terms = keys.verify(key, vendor[1])
    except InputError as exc:
        assert str(exc).startswith("subscription key refused: ")
    else:
        assert isinstance(terms, Terms) and terms.seats >= 0 and terms.ends_at > terms.starts_at


# --------------------------------------------------------------------------- copy and paste


def wrap(text: str, width: int, sep: str = "\n") -> str:
    return sep.join(text[i:i + width] for i in range(0, len(text), width))


@pytest.mark.parametrize("damage", [
    lambda k: f"  {k}  \n",
    lambda k: wrap(k, 76),
    lambda k: wrap(k, 1),
    lambda k: wrap(k, 64, "\r\n"),
    lambda k: wrap(k, 40, "\n    "),
    lambda k: "\t" + wrap(k, 50, " \u00a0"),
    lambda k: "\n".join("> " + line for line in wrap(k, 70).splitlines()),
    lambda k: f'"{k}"',
    lambda k: f"<{k}>",
    lambda k: k.replace(".", "\n.\n"),
])
def test_whitespace_and_line_breaks_inside_the_key_are_tolerated(vendor, make_terms, damage) -> None:
    pem, pub = vendor
    key = keys.issue(pem, make_terms())
    assert keys.verify(damage(key), pub) == make_terms()
    assert keys.normalize(damage(key)) == key


def test_base64_padding_is_tolerated(vendor, make_terms) -> None:
    pem, pub = vendor
    prefix, payload, sig = keys.issue(pem, make_terms()).split(".")
    padded = f"{prefix}.{payload}{'=' * (-len(payload) % 4)}.{sig}=="
    assert keys.verify(padded, pub) == make_terms()


# --------------------------------------------------------------------------- key files and public keys


def test_keygen_writes_a_usable_pair(tmp_path: Path, make_terms) -> None:
    key_path, pub_path = keys.keygen(tmp_path / "vendor")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    public_text = pub_path.read_text()
    assert len(public_text.strip()) == 44
    key = keys.issue(key_path.read_bytes(), make_terms())
    assert keys.verify(key, public_text) == make_terms()  # vendor.pub is exactly what [vendor] public_key takes
    assert keys.verify(key, public_text.strip()) == make_terms()


@pytest.mark.parametrize("existing", ["vendor.key", "vendor.pub"])
def test_keygen_refuses_to_overwrite(tmp_path: Path, existing: str) -> None:
    keys.keygen(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    other = tmp_path / ("vendor.pub" if existing == "vendor.key" else "vendor.key")
    other.unlink()
    with pytest.raises(InputError, match=f"refusing to overwrite .*{existing}"):
        keys.keygen(tmp_path)
    assert not other.exists()
    assert (tmp_path / existing).read_bytes() == before[existing]


def test_pem_public_key_is_accepted(vendor, make_terms) -> None:
    pem, _ = vendor
    public_pem = keys.load_private_key(pem).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    assert keys.verify(keys.issue(pem, make_terms()), public_pem) == make_terms()


@pytest.mark.parametrize(("public", "reason"), [
    (None, "vendor.public_key is not set"),
    ("   ", "vendor.public_key is not set"),
    ("not base64!", "vendor.public_key is not base64"),
    (base64.b64encode(b"x" * 31).decode(), "vendor.public_key decodes to 31 bytes"),
    ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "vendor.public_key: the PEM text"),
])
def test_bad_public_key_is_a_config_error(vendor, make_terms, public, reason) -> None:
    key = keys.issue(vendor[0], make_terms())
    with pytest.raises(ConfigError, match=reason):
        keys.verify(key, public)


@pytest.mark.parametrize("pem", [b"", b"garbage", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"])
def test_bad_private_key_is_refused(make_terms, pem: bytes) -> None:
    with pytest.raises(InputError, match="not an unencrypted Ed25519 PEM key"):
        keys.issue(pem, make_terms())


# --------------------------------------------------------------------------- terms and command-line values


@pytest.mark.parametrize(("starts", "ends", "start_at", "end_at"), [
    ("2026-01-01", "2026-12-31", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    ("2026-02-28", "2028-02-28", "2026-02-28T00:00:00Z", "2028-02-29T00:00:00Z"),
    ("2026-01-01T08:30:00Z", "2026-06-30T17:00:00+02:00", "2026-01-01T08:30:00Z", "2026-06-30T15:00:00Z"),
])
def test_dates_and_datetimes_on_the_command_line(starts, ends, start_at, end_at) -> None:
    assert keys.parse_starts(starts) == at(start_at)
    assert keys.parse_ends(ends) == at(end_at)


@pytest.mark.parametrize(("value", "reason"), [
    ("2026-13-01", "not an ISO-8601 date"),
    ("next year", "not an ISO-8601 date"),
    ("2026-12-31T00:00:00", "has no time zone"),
])
def test_bad_dates_name_the_option(value: str, reason: str) -> None:
    with pytest.raises(InputError, match=f"--ends: .*{reason}"):
        keys.parse_ends(value)


def test_tiers_and_pools_options() -> None:
    assert keys.parse_tiers("1000, 2000,5000") == [1000, 2000, 5000]
    assert keys.parse_pools("elearn=100, weclimb=50,combined=20") == {"elearn": 100, "weclimb": 50, "combined": 20}
    for bad in ("elearn", "elearn=x", "a=1,a=2", "a=-1"):
        with pytest.raises(InputError, match="--pools"):
            keys.parse_pools(bad)
    with pytest.raises(InputError, match="--tiers"):
        keys.parse_tiers("1000,lots")


def test_invalid_terms_cannot_be_built_or_issued(vendor, make_terms) -> None:
    with pytest.raises(InputError, match="seats must be") as info:
        make_terms(seats=-5, ends_at=at("2025-01-01T00:00:00Z"))
    assert len(info.value.problems) == 2
    with pytest.raises(InputError, match="with a time zone"):
        make_terms(starts_at=datetime(2026, 1, 1))  # naive on purpose


def test_terms_are_immutable(make_terms) -> None:
    terms = make_terms(extras={"pools": {"elearn": 1}})
    with pytest.raises(AttributeError):
        terms.seats = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        terms.extras["pools"]["elearn"] = 7  # type: ignore[index]
    assert {terms: 1}[make_terms(extras={"pools": {"elearn": 1}})] == 1
    assert terms.ends_at - terms.starts_at == timedelta(days=365)
