"""The authority's own tables (SQLite or PostgreSQL), apart from any deployment's schema.

They live in their own ``MetaData`` and are created by ``create_schema`` (idempotent), so the
deployment's Alembic history never sees them and an authority database holds nothing else.

* ``authority_subscription`` — each imported key, newest first wins; ``state`` active | revoked.
* ``authority_activation`` — subscription → Entra tenant id and deployment id, with first and last
  seen and the lease expiry. At most one row per subscription is ``active``: a partial unique
  index enforces it, so two concurrent activations cannot both win.
* ``authority_audit`` — every import, activation, renewal, move, revoke and refusal.
* ``authority_vendor_token`` — SHA-256 hashes of the vendor's API tokens (never the token).
* ``authority_meta`` — the vendor public key the authority verifies keys and leases with.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Engine

from licsync.db.models import UTCDateTime

metadata = MetaData()

subscriptions = Table(
    "authority_subscription", metadata,
    Column("id", String(128), primary_key=True),
    Column("key", Text, nullable=False),
    Column("customer", String(256), nullable=False, default=""),
    Column("seats", Integer, nullable=False, default=0),
    Column("ends_at", UTCDateTime(), nullable=False),
    Column("key_issued_at", UTCDateTime(), nullable=False),
    Column("bound_tenant_id", String(36)),
    Column("state", String(16), nullable=False, default="active"),
    Column("imported_at", UTCDateTime(), nullable=False),
)

activations = Table(
    "authority_activation", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscription_id", String(128), nullable=False, index=True),
    Column("tenant_id", String(36), nullable=False),
    Column("deployment_id", String(128), nullable=False),
    Column("activated_at", UTCDateTime(), nullable=False),
    Column("renewed_at", UTCDateTime()),
    Column("lease_expires_at", UTCDateTime()),
    Column("state", String(16), nullable=False),  # active | moved | revoked | deactivated
    Column("ended_at", UTCDateTime()),
)
_ONE_ACTIVE = activations.c.state == "active"
Index("uq_authority_activation_one_active", activations.c.subscription_id, unique=True,
      sqlite_where=_ONE_ACTIVE, postgresql_where=_ONE_ACTIVE)

audit = Table(
    "authority_audit", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("subscription_id", String(128)),
    Column("detail", JSON),
)

vendor_tokens = Table(
    "authority_vendor_token", metadata,
    Column("id", String(32), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("label", String(256)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
)

meta = Table(
    "authority_meta", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


def create_schema(engine: Engine) -> None:
    """Create the authority's tables where missing; safe to call at every start."""
    metadata.create_all(engine)
