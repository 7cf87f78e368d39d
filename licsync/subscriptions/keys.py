"""Signed subscription keys: the vendor issues them, licsync verifies them. Pure; no database.

Text form (version 1)::

    LSK1.<base64url(canonical JSON payload)>.<base64url(Ed25519 signature)>

* The signature covers the ASCII text ``LSK1.<payload>`` (as JWS does), so the version prefix is
  signed too and a key cannot be relabelled as another version.
* The payload is canonical JSON (sorted keys, no spaces, UTF-8) so the same terms always give the
  same bytes; verification works on the bytes received, never on a re-encoding.
* Keys travel through email and terminals: parsing drops every whitespace character (line breaks
  inserted anywhere included), ``>`` quoting at the start of lines and surrounding quotes.

The terms and their date semantics (``ends_at`` is the expiry instant) live in
``licsync.subscriptions.terms`` and are re-exported here.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from licsync.errors import ConfigError, InputError
from licsync.subscriptions.terms import (
    FIELDS,
    OVERAGES,
    POLICIES,
    FrozenMap,
    Terms,
    parse_ends,
    parse_pools,
    parse_starts,
    parse_tiers,
)

__all__ = [
    "OVERAGES", "POLICIES", "FrozenMap", "Terms", "generate_keypair", "issue", "keygen", "load_public_key",
    "normalize", "parse_ends", "parse_pools", "parse_starts", "parse_tiers", "read_unverified", "verify",
]

VERSION = "LSK1"
MAX_KEY_CHARS = 16_384  # a real key is a few hundred characters; refuse pasted novels early
PRIVATE_KEY_FILE = "vendor.key"
PUBLIC_KEY_FILE = "vendor.pub"

_B64URL = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")
_PREFIX = re.compile(r"^LSK(\d+)\.")


# --------------------------------------------------------------------------- key material


def generate_keypair() -> tuple[bytes, str]:
    """A new vendor key pair: (private key as unencrypted PKCS#8 PEM, public key as base64 text)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return pem, base64.b64encode(raw).decode("ascii")


def keygen(out_dir: Path | str) -> tuple[Path, Path]:
    """Write ``vendor.key`` (mode 0600) and ``vendor.pub`` into ``out_dir``; never overwrite.

    Overwriting would orphan every key already issued, so an existing pair is refused whole.
    """
    out = Path(out_dir)
    key_path, pub_path = out / PRIVATE_KEY_FILE, out / PUBLIC_KEY_FILE
    existing = [str(p) for p in (key_path, pub_path) if p.exists()]
    if existing:
        raise InputError(f"refusing to overwrite {' and '.join(existing)}: keys issued with the existing "
                         "pair would stop verifying; choose another --out directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {out}: {exc.strerror}") from None
    pem, public_b64 = generate_keypair()
    _write_new(key_path, pem, 0o600)
    try:
        _write_new(pub_path, (public_b64 + "\n").encode("ascii"), 0o644)
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise
    return key_path, pub_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise InputError(f"refusing to overwrite {path}") from None
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)  # the umask must not loosen (or matter for) the private key's mode


def load_public_key(public_key_b64: str | None) -> Ed25519PublicKey:
    """The vendor public key from configuration (base64 of vendor.pub, or a PEM public key)."""
    if not public_key_b64 or not public_key_b64.strip():
        raise ConfigError("vendor.public_key is not set: put the text of the vendor's vendor.pub there")
    text = public_key_b64.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            key = None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError("vendor.public_key: the PEM text is not an Ed25519 public key")
        return key
    compact = "".join(text.split())
    try:
        raw = base64.b64decode(compact.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("vendor.public_key is not base64 text: copy vendor.pub exactly") from None
    if len(raw) != 32:
        raise ConfigError(f"vendor.public_key decodes to {len(raw)} bytes, an Ed25519 public key has 32: "
                          "copy vendor.pub exactly")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_private_key(private_key_pem: bytes) -> Ed25519PrivateKey:
    """The vendor signing key; anything else is refused before a key could be signed with it."""
    try:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError("the private key is not an unencrypted Ed25519 PEM key "
                         "(use the vendor.key written by `licsync subscription keygen`)")
    return key


# --------------------------------------------------------------------------- issue and verify


def canonical_json(payload: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: equal terms always sign the same bytes."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def issue(private_key_pem: bytes, terms: Terms) -> str:
    """Sign ``terms``; returns the one-line key text."""
    key = load_private_key(private_key_pem)
    signed = f"{VERSION}.{_b64(canonical_json(terms.to_payload()))}"
    return f"{signed}.{_b64(key.sign(signed.encode('ascii')))}"


def normalize(key_text: str) -> str:
    """The key with email quoting, surrounding quotes and every whitespace character removed."""
    if not isinstance(key_text, str):
        raise InputError("subscription key refused: expected text")
    if len(key_text) > MAX_KEY_CHARS:
        raise InputError(f"subscription key refused: {len(key_text)} characters is far too long for a key; "
                         "paste only the key")
    lines = (line.strip().lstrip(">") for line in key_text.splitlines())
    return "".join("".join(lines).split()).strip("\"'`<>")


def _split(key_text: str) -> tuple[str, bytes, bytes]:
    """(signed text, payload bytes, signature bytes), or InputError saying what is wrong."""
    text = normalize(key_text)
    m = _PREFIX.match(text)
    if not m:
        raise InputError(f"subscription key refused: not a licsync subscription key (it must start with {VERSION}.)")
    if m.group(0)[:-1] != VERSION:
        raise InputError(f"subscription key refused: key version {m.group(0)[:-1]} is not supported by this "
                         f"licsync, which reads {VERSION} keys; upgrade licsync or ask the vendor for a {VERSION} key")
    parts = text.split(".")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise InputError(f"subscription key refused: incomplete or damaged, expected {VERSION}.<payload>.<signature>;"
                         " copy the whole key")
    decoded = []
    for what, segment in (("payload", parts[1]), ("signature", parts[2])):
        try:
            if not _B64URL.match(segment):
                raise ValueError
            decoded.append(base64.urlsafe_b64decode(segment.rstrip("=") + "=" * (-len(segment.rstrip("=")) % 4)))
        except (binascii.Error, ValueError):
            raise InputError(f"subscription key refused: the {what} is not valid base64url; "
                             "the key was damaged in transit, copy it again") from None
    if len(decoded[1]) != 64:
        raise InputError("subscription key refused: the signature has the wrong length; copy the whole key")
    return f"{VERSION}.{parts[1].rstrip('=')}", decoded[0], decoded[1]


def verify(key_text: str, public_key_b64: str | None) -> Terms:
    """Check the signature with the vendor public key, then the terms. Never trusts an unsigned byte."""
    public = load_public_key(public_key_b64)
    signed, payload, signature = _split(key_text)
    try:
        public.verify(signature, signed.encode("ascii"))
    except InvalidSignature:
        raise InputError("subscription key refused: the signature does not verify — it was signed by another "
                         "vendor key or altered; check [vendor] public_key, or ask the vendor for a new key") from None
    return _terms_from_payload(payload)


def read_unverified(key_text: str) -> Terms:
    """Terms of a key without checking its signature: for display of a stored, already verified key."""
    return _terms_from_payload(_split(key_text)[1])


def _terms_from_payload(payload: bytes) -> Terms:
    try:
        data = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):
        raise InputError("subscription key refused: the payload is not valid JSON") from None
    if not isinstance(data, dict):
        raise InputError("subscription key refused: the payload is not a JSON object")
    problems = [f"missing field {name!r}" for name in FIELDS if name not in data]
    problems += [f"unknown field {name!r}" for name in sorted(set(data) - set(FIELDS))]
    values: dict[str, Any] = {}
    for name in FIELDS:
        value = data.get(name)
        if name in ("starts_at", "ends_at", "issued_at") and name in data:
            try:
                value = datetime.fromisoformat(value) if isinstance(value, str) else None
            except ValueError:
                value = None
            if value is None:
                problems.append(f"{name} is not an ISO-8601 datetime")
        elif name == "extras" and not isinstance(value, dict):
            problems.append("extras must be an object")
        values[name] = value
    if problems:
        raise InputError("subscription key refused: " + "; ".join(problems), problems)
    try:
        return Terms(**values)
    except InputError as exc:
        raise InputError(f"subscription key refused: {'; '.join(exc.problems)}", exc.problems) from None
