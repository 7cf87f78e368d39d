"""The authority's rules, over one database connection inside the caller's transaction.

* **activate** (key, tenant id, deployment id): the key must verify with the vendor key, be imported
  and not revoked, and — when issued with ``--tenant-id`` — name this tenant. The same tenant and
  deployment renew their activation; anything else *moves* the subscription: the previous active
  activation becomes ``moved`` (its next renewal is refused "moved") and a new one is ``active``.
* **renew** (lease): the lease must verify and name the active activation (subscription, tenant,
  deployment). A moved or revoked activation is refused with that word. An expired lease may be
  renewed — the authority being away must not end a customer's activation.
* **deactivate** (lease): the deployment lets go (the activation becomes ``deactivated``).
* vendor only: **list**, **move** (to a tenant id: the next activation from that tenant claims it),
  **revoke**.

Every answer a deployment relies on is a freshly signed lease, written in the same transaction
as the activation row it describes: a crash before the commit leaves the old state and the old
lease (the deployment retries), a crash after it leaves a state the next renewal reproduces.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from licsync.authority import lease as lease_mod
from licsync.authority.store import activations, audit, meta, subscriptions, vendor_tokens
from licsync.errors import ConfigError, InputError, LicsyncError
from licsync.subscriptions import keys

PENDING_DEPLOYMENT = "-"  # a vendor move names a tenant, not a deployment: its first activation claims it


class Refused(LicsyncError):
    """A request the authority answers with a refusal: ``code`` is the stable word, ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.code, self.status = code, status


@dataclass(frozen=True)
class Signer:
    """The vendor's signing key and the lease length the authority grants."""

    private_key_pem: bytes
    public_key_b64: str
    lease_days: float = lease_mod.DEFAULT_LEASE_DAYS

    def lease(self, subscription_id: str, tenant_id: str, deployment_id: str, now: datetime) -> tuple[str, datetime]:
        lease = lease_mod.new_lease(subscription_id, tenant_id, deployment_id, now, self.lease_days)
        return lease_mod.sign(self.private_key_pem, lease), lease.expires_at


def signer_from_pem(private_key_pem: bytes, lease_days: float = lease_mod.DEFAULT_LEASE_DAYS) -> Signer:
    key = keys.load_private_key(private_key_pem)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if not 0 < lease_days <= 90:
        raise ConfigError(f"--lease-days {lease_days}: must be more than 0 and at most 90")
    return Signer(private_key_pem, base64.b64encode(raw).decode("ascii"), lease_days)


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _audit(conn: Connection, now: datetime, actor: str, action: str, subscription_id: str | None,
           **detail: Any) -> None:
    conn.execute(insert(audit).values(at=now, actor=actor, action=action, subscription_id=subscription_id,
                                      detail={k: _iso(v) if isinstance(v, datetime) else v for k, v in detail.items()}))


# --------------------------------------------------------------------------- vendor key and tokens


def bind_vendor_key(conn: Connection, public_key_b64: str) -> None:
    """Record the vendor public key on first use; a database set up for another key is refused."""
    stored = conn.execute(select(meta.c.value).where(meta.c.name == "vendor_public_key")).scalar()
    if stored is None:
        conn.execute(insert(meta).values(name="vendor_public_key", value=public_key_b64))
    elif stored != public_key_b64:
        raise ConfigError("this authority database was set up with another vendor key: its leases and keys "
                          "would not verify; use the vendor.key it was created with")


def vendor_public_key(conn: Connection) -> str:
    stored = conn.execute(select(meta.c.value).where(meta.c.name == "vendor_public_key")).scalar()
    if stored is None:
        raise ConfigError("this authority database knows no vendor key yet: run `licsync authority import-key "
                          "--private-key vendor.key …` or `licsync authority serve` once")
    return str(stored)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_vendor_token(conn: Connection, now: datetime, label: str | None = None) -> str:
    token = "lsa_" + secrets.token_urlsafe(32)
    conn.execute(insert(vendor_tokens).values(id=secrets.token_hex(8), token_hash=_hash(token), label=label,
                                              created_at=now))
    _audit(conn, now, "cli", "vendor_token_created", None, label=label)
    return token


def vendor_token_ok(conn: Connection, token: str) -> bool:
    if not token or len(token) > 256:
        return False
    row = conn.execute(select(vendor_tokens.c.revoked_at).where(vendor_tokens.c.token_hash == _hash(token))).first()
    return row is not None and row[0] is None


# --------------------------------------------------------------------------- subscriptions


def import_key(conn: Connection, key_text: str, now: datetime, actor: str = "cli") -> dict[str, Any]:
    """Make a subscription known (or take its newer key). Older keys never replace newer ones."""
    terms = keys.verify(key_text, vendor_public_key(conn))
    bound = terms.extras.get("tenant_id")
    row = conn.execute(select(subscriptions).where(subscriptions.c.id == terms.id).with_for_update()).first()
    values = {"key": keys.normalize(key_text), "customer": terms.customer, "seats": terms.seats,
              "ends_at": terms.ends_at, "key_issued_at": terms.issued_at, "bound_tenant_id": bound}
    if row is None:
        conn.execute(insert(subscriptions).values(id=terms.id, state="active", imported_at=now, **values))
        outcome = "imported"
    elif terms.issued_at > row.key_issued_at:
        conn.execute(update(subscriptions).where(subscriptions.c.id == terms.id).values(**values))
        outcome = "updated"
    else:
        outcome = "unchanged"
    _audit(conn, now, actor, f"key_{outcome}", terms.id, seats=terms.seats, ends_at=terms.ends_at)
    return {"subscription_id": terms.id, "customer": terms.customer, "seats": terms.seats,
            "ends_at": _iso(terms.ends_at), "tenant_id": bound, "outcome": outcome}


def _subscription(conn: Connection, subscription_id: str) -> Any:
    row = conn.execute(select(subscriptions).where(subscriptions.c.id == subscription_id).with_for_update()).first()
    if row is None:
        raise Refused("unknown_subscription", f"subscription {subscription_id} is not known to the authority; "
                      "the vendor must import its key", 404)
    if row.state == "revoked":
        raise Refused("revoked", f"subscription {subscription_id} was revoked by the vendor", 410)
    return row


def _active(conn: Connection, subscription_id: str) -> Any:
    return conn.execute(select(activations).where(activations.c.subscription_id == subscription_id,
                                                  activations.c.state == "active")).first()


def activate(conn: Connection, signer: Signer, key_text: str, tenant_id: str, deployment_id: str,
             now: datetime) -> dict[str, Any]:
    """Activate (or re-activate) a subscription for a tenant and deployment; returns the lease."""
    tenant_id = lease_mod.tenant_guid(tenant_id)
    if not isinstance(deployment_id, str) or not 0 < len(deployment_id) <= 128 or deployment_id == PENDING_DEPLOYMENT:
        raise InputError("deployment_id must be 1-128 characters")
    terms = keys.verify(key_text, signer.public_key_b64)
    sub = _subscription(conn, terms.id)
    if terms.issued_at < sub.key_issued_at:
        raise Refused("stale_key", f"this key for {terms.id} is older than the one the vendor registered; "
                      "use the newest key", 409)
    if sub.bound_tenant_id and sub.bound_tenant_id != tenant_id:
        raise Refused("tenant_bound", f"subscription {terms.id} is bound to another tenant", 403)
    current = _active(conn, terms.id)
    outcome = "activated"
    moved_from = None
    if current is not None and current.tenant_id == tenant_id and current.deployment_id in (deployment_id,
                                                                                           PENDING_DEPLOYMENT):
        outcome = "renewed" if current.deployment_id == deployment_id else "claimed"
        text, expires = signer.lease(terms.id, tenant_id, deployment_id, now)
        conn.execute(update(activations).where(activations.c.id == current.id).values(
            deployment_id=deployment_id, renewed_at=now, lease_expires_at=expires))
    else:
        if current is not None:
            moved_from = {"tenant_id": current.tenant_id, "deployment_id": current.deployment_id}
            conn.execute(update(activations).where(activations.c.id == current.id).values(state="moved", ended_at=now))
            outcome = "moved"
        text, expires = signer.lease(terms.id, tenant_id, deployment_id, now)
        conn.execute(insert(activations).values(subscription_id=terms.id, tenant_id=tenant_id,
                                                deployment_id=deployment_id, activated_at=now, renewed_at=now,
                                                lease_expires_at=expires, state="active"))
    _audit(conn, now, "deployment", f"activation_{outcome}", terms.id, tenant_id=tenant_id,
           deployment_id=deployment_id, lease_expires_at=expires, moved_from=moved_from)
    return {"lease": text, "lease_expires_at": _iso(expires), "outcome": outcome, "subscription_id": terms.id}


def _activation_of(conn: Connection, signer: Signer, lease_text: str) -> tuple[lease_mod.Lease, Any]:
    lease = lease_mod.verify(lease_text, signer.public_key_b64)
    _subscription(conn, lease.subscription_id)
    current = _active(conn, lease.subscription_id)
    if current is None or current.tenant_id != lease.tenant_id or current.deployment_id != lease.deployment_id:
        mine = conn.execute(select(activations.c.state).where(
            activations.c.subscription_id == lease.subscription_id, activations.c.tenant_id == lease.tenant_id,
            activations.c.deployment_id == lease.deployment_id).order_by(activations.c.id.desc())).scalar()
        if mine == "revoked":
            raise Refused("revoked", f"subscription {lease.subscription_id} was revoked by the vendor", 410)
        raise Refused("moved", f"subscription {lease.subscription_id} is active elsewhere now (moved)", 409)
    return lease, current


def renew(conn: Connection, signer: Signer, lease_text: str, now: datetime) -> dict[str, Any]:
    """A new lease for the active activation the presented lease names; refused "moved" / "revoked"."""
    lease, current = _activation_of(conn, signer, lease_text)
    text, expires = signer.lease(lease.subscription_id, lease.tenant_id, lease.deployment_id, now)
    conn.execute(update(activations).where(activations.c.id == current.id).values(renewed_at=now,
                                                                                  lease_expires_at=expires))
    _audit(conn, now, "deployment", "activation_renewed", lease.subscription_id, tenant_id=lease.tenant_id,
           deployment_id=lease.deployment_id, lease_expires_at=expires)
    return {"lease": text, "lease_expires_at": _iso(expires), "outcome": "renewed",
            "subscription_id": lease.subscription_id}


def deactivate(conn: Connection, signer: Signer, lease_text: str, now: datetime) -> dict[str, Any]:
    lease, current = _activation_of(conn, signer, lease_text)
    conn.execute(update(activations).where(activations.c.id == current.id).values(state="deactivated", ended_at=now))
    _audit(conn, now, "deployment", "activation_deactivated", lease.subscription_id, tenant_id=lease.tenant_id,
           deployment_id=lease.deployment_id)
    return {"subscription_id": lease.subscription_id, "state": "deactivated"}


def audit_refusal(conn: Connection, now: datetime, call: str, exc: Refused) -> None:
    """A refusal rolls its own transaction back; its audit row is written in a new one."""
    _audit(conn, now, "deployment", f"{call}_refused", None, code=exc.code, reason=str(exc))


# --------------------------------------------------------------------------- vendor


def list_activations(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(activations).order_by(activations.c.subscription_id, activations.c.id)).all()
    return [{"subscription_id": r.subscription_id, "tenant_id": r.tenant_id, "deployment_id": r.deployment_id,
             "activated_at": _iso(r.activated_at), "renewed_at": _iso(r.renewed_at),
             "lease_expires_at": _iso(r.lease_expires_at), "state": r.state} for r in rows]


def move(conn: Connection, subscription_id: str, tenant_id: str, now: datetime, actor: str = "cli") -> dict[str, Any]:
    """The vendor moves a subscription to a tenant: its current deployment's next renewal says "moved"."""
    tenant_id = lease_mod.tenant_guid(tenant_id, "--tenant-id")
    sub = _subscription(conn, subscription_id)
    if sub.bound_tenant_id and sub.bound_tenant_id != tenant_id:
        raise Refused("tenant_bound", f"subscription {subscription_id} is bound to tenant {sub.bound_tenant_id}; "
                      "issue a new key to move it", 403)
    current = _active(conn, subscription_id)
    if current is not None and current.tenant_id == tenant_id:
        return {"subscription_id": subscription_id, "tenant_id": tenant_id, "outcome": "unchanged"}
    if current is not None:
        conn.execute(update(activations).where(activations.c.id == current.id).values(state="moved", ended_at=now))
    conn.execute(insert(activations).values(subscription_id=subscription_id, tenant_id=tenant_id,
                                            deployment_id=PENDING_DEPLOYMENT, activated_at=now, state="active"))
    _audit(conn, now, actor, "activation_moved_by_vendor", subscription_id, tenant_id=tenant_id,
           moved_from=None if current is None else current.tenant_id)
    return {"subscription_id": subscription_id, "tenant_id": tenant_id, "outcome": "moved"}


def revoke(conn: Connection, subscription_id: str, now: datetime, actor: str = "cli") -> dict[str, Any]:
    _subscription(conn, subscription_id)
    conn.execute(update(subscriptions).where(subscriptions.c.id == subscription_id).values(state="revoked"))
    conn.execute(update(activations).where(activations.c.subscription_id == subscription_id,
                                           activations.c.state == "active").values(state="revoked", ended_at=now))
    _audit(conn, now, actor, "subscription_revoked", subscription_id)
    return {"subscription_id": subscription_id, "state": "revoked"}
