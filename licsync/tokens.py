"""API tokens: who may read what through the HTTP API and the dashboard.

A token is printed once (``lsy_<id>_<secret>``) and only its SHA-256 is stored. The secret has
256 bits of entropy, so a plain hash is enough (no slow KDF: nobody can brute-force 2^256, and the
launch-time hot path must stay cheap); the ``id`` part lets us fetch the row by primary key and
compare the hash in constant time instead of probing an index with attacker-chosen hashes.

Roles (SPEC §5):

* ``tenant-admin`` — everything of its tenant;
* ``catalog-admin`` — the status of its named catalogs only (read-only);
* ``platform`` — the access decisions of its tenant and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlmodel import Session

from licsync.db.models import ApiToken
from licsync.errors import InputError

ROLES = ("tenant-admin", "catalog-admin", "platform")
PREFIX = "lsy_"
_T = ApiToken.__table__  # type: ignore[attr-defined]
# A Core read by primary key: on the launch-time hot path the ORM's identity map costs more than the read.
_BY_ID = select(_T.c.token_hash, _T.c.tenant, _T.c.role, _T.c.catalogs, _T.c.revoked_at, _T.c.label,
               _T.c.expires_at).where(_T.c.id == bindparam("id"))
_TOKEN = re.compile(r"^lsy_([0-9a-f]{16})_([A-Za-z0-9_-]{40,64})$")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and the scope its credential grants."""

    tenant: str
    role: str
    catalogs: frozenset[str] = field(default_factory=frozenset)
    token_id: str | None = None  # None for Entra ID bearer tokens
    subject: str = ""  # the token's label, or the Entra ID user/app for audit lines

    def is_tenant_admin(self, tenant: str) -> bool:
        return self.role == "tenant-admin" and self.tenant == tenant

    def may_read_catalog(self, tenant: str, catalog_id: str) -> bool:
        if self.tenant != tenant:
            return False
        return self.role == "tenant-admin" or (self.role == "catalog-admin" and catalog_id in self.catalogs)

    def may_see_dashboard(self, tenant: str) -> bool:
        """Tenant admins and the catalog admins of this tenant (who then see only their catalogs)."""
        return self.tenant == tenant and self.role in ("tenant-admin", "catalog-admin")

    def may_decide_access(self, tenant: str) -> bool:
        return self.tenant == tenant and self.role in ("platform", "tenant-admin")

    def catalog_scope(self) -> frozenset[str] | None:
        """The catalogs this caller may see, or None for all of its tenant's."""
        return None if self.role == "tenant-admin" else self.catalogs


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _check_role(role: str, catalogs: list[str]) -> list[str]:
    if role not in ROLES:
        raise InputError(f"unknown role {role!r} (use {', '.join(ROLES)})")
    cats = sorted({c.strip() for c in catalogs if c.strip()})
    if role == "catalog-admin" and not cats:
        raise InputError("a catalog-admin token needs at least one --catalog ID")
    if role != "catalog-admin" and cats:
        raise InputError(f"--catalog applies to catalog-admin tokens only, not {role}")
    return cats


def create_token(
    session: Session, tenant: str, role: str, catalogs: list[str], now: datetime, label: str | None = None,
    *, expires_at: datetime | None = None,
) -> str:
    """Store a new token's hash and return the token itself: the only time it is ever seen.
    ``expires_at``: refused from then on (None: until revoked)."""
    cats = _check_role(role, catalogs)
    token_id = secrets.token_hex(8)
    raw = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    session.add(
        ApiToken(
            id=token_id,
            token_hash=hash_token(raw),
            tenant=tenant,
            role=role,
            catalogs=cats or None,
            created_at=now,
            label=label,
            expires_at=expires_at,
        )
    )
    session.flush()
    return raw


def token_id_of(raw: str) -> str | None:
    m = _TOKEN.match(raw)
    return m.group(1) if m else None


def authenticate(session: Session, raw: str, now: datetime) -> Principal | None:
    """The principal of a valid, unrevoked token, or None. One primary-key read, no write."""
    token_id = token_id_of(raw)
    if token_id is None:
        return None
    row = session.connection().execute(_BY_ID, {"id": token_id}).first()
    expected = row.token_hash if row is not None else hash_token("lsy_missing")
    if not hmac.compare_digest(hash_token(raw), expected) or row is None:
        return None
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return Principal(
        tenant=row.tenant,
        role=row.role,
        catalogs=frozenset(row.catalogs or ()),
        token_id=token_id,
        subject=row.label or f"token {token_id}",
    )


def touch(session: Session, token_id: str, now: datetime) -> None:
    """Record use (``last_used_at``). Callers throttle this: it is a write, kept off the hot path."""
    row = session.get(ApiToken, token_id)
    if row is not None:
        row.last_used_at = now


def revoke(session: Session, token_id: str, now: datetime) -> bool:
    """Revoke a token at once. False when no such token, or already revoked."""
    row = session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = now
    return True


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


def list_tokens(session: Session, tenant: str | None = None, *, include_revoked: bool = False) -> list[dict[str, Any]]:
    """Tokens without their secrets: id, tenant, role, catalogs, label and dates."""
    q = select(ApiToken)
    if tenant:
        q = q.where(ApiToken.tenant == tenant)
    if not include_revoked:
        q = q.where(ApiToken.revoked_at.is_(None))  # type: ignore[union-attr]
    rows = session.execute(q.order_by(ApiToken.created_at)).scalars().all()  # type: ignore[arg-type]
    return [
        {
            "id": r.id,
            "tenant": r.tenant,
            "role": r.role,
            "catalogs": list(r.catalogs or []),
            "label": r.label,
            "created_at": _iso(r.created_at),
            "last_used_at": _iso(r.last_used_at),
            "revoked_at": _iso(r.revoked_at),
            "expires_at": _iso(r.expires_at),
        }
        for r in rows
    ]
