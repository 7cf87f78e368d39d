"""Activation leases: the authority signs them, a deployment verifies them offline. Pure; no I/O.

Text form (version 1)::

    LSL1.<base64url(canonical JSON payload)>.<base64url(Ed25519 signature)>

The signature covers ``LSL1.<payload>``, so a subscription key (``LSK1.…``) signed by the same
vendor key can never pass for a lease, nor a lease for a key. The payload names the subscription,
the Entra tenant id, the deployment it was issued to, the issue instant and the expiry instant
(both the authority's clock).

Clock skew: a deployment accepts a lease from ``issued_at - CLOCK_SKEW`` until
``expires_at + CLOCK_SKEW`` by its own clock. A deployment clock more than ``CLOCK_SKEW`` behind the
authority's sees a fresh lease as "not yet valid" and says so; a clock set back to stretch an old
lease is caught by the same bound against the newest lease the deployment holds (see ``check``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature

from licsync.errors import InputError
from licsync.subscriptions.keys import canonical_json, load_private_key, load_public_key

VERSION = "LSL1"
DEFAULT_LEASE_DAYS = 7
CLOCK_SKEW = timedelta(minutes=10)
MAX_LEASE_CHARS = 4096
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
FIELDS = ("subscription_id", "tenant_id", "deployment_id", "issued_at", "expires_at")


def tenant_guid(value: str, what: str = "tenant id") -> str:
    """An Entra tenant id in canonical form (lower case GUID), or InputError."""
    text = (value or "").strip()
    if not _GUID.match(text):
        raise InputError(f"{what} {value!r} is not an Entra tenant id (a GUID like "
                         "72f988bf-86f1-41af-91ab-2d7cd011db47)")
    return text.lower()


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class Lease:
    """What the authority vouches for: this subscription is active on this tenant, for this deployment."""

    subscription_id: str
    tenant_id: str
    deployment_id: str
    issued_at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        problems = []
        for name in ("subscription_id", "deployment_id"):
            v = getattr(self, name)
            if not isinstance(v, str) or not 0 < len(v) <= 128:
                problems.append(f"{name} must be 1-128 characters")
        if not isinstance(self.tenant_id, str) or not _GUID.match(self.tenant_id):
            problems.append("tenant_id must be a GUID")
        for name in ("issued_at", "expires_at"):
            v = getattr(self, name)
            if not isinstance(v, datetime) or v.tzinfo is None:
                problems.append(f"{name} must be a datetime with a time zone")
        if not problems and self.expires_at <= self.issued_at:
            problems.append("expires_at must be after issued_at")
        if problems:
            raise InputError("lease refused: " + "; ".join(problems), problems)
        object.__setattr__(self, "tenant_id", self.tenant_id.lower())

    @property
    def renew_after(self) -> datetime:
        """Half-life: a deployment renews once past it."""
        return self.issued_at + (self.expires_at - self.issued_at) / 2

    def holds_until(self) -> datetime:
        """The last instant (exclusive) a deployment may rely on it: expiry plus the skew bound."""
        return self.expires_at + CLOCK_SKEW

    def to_payload(self) -> dict[str, Any]:
        return {"subscription_id": self.subscription_id, "tenant_id": self.tenant_id,
                "deployment_id": self.deployment_id, "issued_at": _iso(self.issued_at),
                "expires_at": _iso(self.expires_at)}


def new_lease(subscription_id: str, tenant_id: str, deployment_id: str, now: datetime,
              days: float = DEFAULT_LEASE_DAYS) -> Lease:
    return Lease(subscription_id=subscription_id, tenant_id=tenant_id, deployment_id=deployment_id,
                 issued_at=now, expires_at=now + timedelta(days=days))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(segment: str) -> bytes:
    if not _B64URL.match(segment):
        raise ValueError
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def sign(private_key_pem: bytes, lease: Lease) -> str:
    key = load_private_key(private_key_pem)
    signed = f"{VERSION}.{_b64(canonical_json(lease.to_payload()))}"
    return f"{signed}.{_b64(key.sign(signed.encode('ascii')))}"


def _split(text: str) -> tuple[bytes, bytes, bytes]:
    """(signed bytes, payload, signature) of a lease text, or InputError."""
    if not isinstance(text, str) or len(text) > MAX_LEASE_CHARS:
        raise InputError("lease refused: not a lease (wrong type or far too long)")
    parts = "".join(text.split()).split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise InputError(f"lease refused: not a {VERSION} lease")
    try:
        return f"{VERSION}.{parts[1]}".encode("ascii"), _unb64(parts[1]), _unb64(parts[2])
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InputError("lease refused: damaged (not base64url)") from None


def _from_payload(payload: bytes) -> Lease:
    try:
        data = json.loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InputError("lease refused: the payload is not JSON") from None
    if not isinstance(data, dict) or set(data) != set(FIELDS):
        raise InputError(f"lease refused: the payload must have exactly the fields {', '.join(FIELDS)}")
    try:
        values = {k: (datetime.fromisoformat(v) if k in ("issued_at", "expires_at") else v) for k, v in data.items()}
    except (TypeError, ValueError):
        raise InputError("lease refused: issued_at / expires_at are not ISO-8601 instants") from None
    return Lease(**values)


def verify(text: str, public_key_b64: str | None) -> Lease:
    """The lease, if the vendor key signed exactly these bytes; InputError otherwise."""
    public = load_public_key(public_key_b64)
    signed, payload, signature = _split(text)
    try:
        public.verify(signature, signed)
    except InvalidSignature:
        raise InputError("lease refused: the signature does not verify — altered, or signed by another "
                         "vendor's key") from None
    return _from_payload(payload)


def read_unverified(text: str) -> Lease:
    """A stored lease, verified when it was stored: for reading its fields back."""
    return _from_payload(_split(text)[1])


def check(lease: Lease, *, subscription_id: str, tenant_id: str, deployment_id: str, now: datetime,
          newest: Lease | None = None) -> None:
    """Refuse a lease this deployment must not rely on; the message says which rule and why.

    ``newest`` is the newest lease the deployment already holds: a lease issued before it is a
    replay (an old answer presented again), and a clock more than ``CLOCK_SKEW`` before its
    issue instant has been set back (or is wrong) — either way the lease is not taken.
    """
    if lease.subscription_id != subscription_id:
        raise InputError(f"lease refused: it is for subscription {lease.subscription_id}, not {subscription_id}")
    if lease.tenant_id != tenant_id.lower():
        raise InputError(f"lease refused: it is for tenant {lease.tenant_id}, not {tenant_id.lower()}; a lease "
                         "serves only the tenant it was issued for")
    if lease.deployment_id != deployment_id:
        raise InputError("lease refused: it was issued to another deployment (a copied or replayed lease)")
    if newest is not None and lease.issued_at < newest.issued_at:
        raise InputError(f"lease refused: issued at {_iso(lease.issued_at)}, before the lease already held "
                         f"({_iso(newest.issued_at)}): a replayed lease")
    if now < lease.issued_at - CLOCK_SKEW:
        raise InputError(f"lease refused: issued at {_iso(lease.issued_at)} by the authority's clock, more than "
                         f"{int(CLOCK_SKEW.total_seconds() // 60)} minutes after this machine's time "
                         f"{_iso(now)}: fix this machine's clock")
    if now >= lease.holds_until():
        raise InputError(f"lease refused: it expired at {_iso(lease.expires_at)}")


def holds(lease: Lease, now: datetime) -> bool:
    """Whether a verified, stored lease still licenses at ``now`` (inside the skew bound both ways)."""
    return lease.issued_at - CLOCK_SKEW <= now < lease.holds_until()
