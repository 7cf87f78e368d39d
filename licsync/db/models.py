"""The database schema, one SQLModel class per table.

Every instant is stored as UTC and read back timezone-aware (``UTCDateTime``). Tables are keyed
by the tenant's local handle (``tenant``), the name used by the CLI and API.

The schema is created and migrated only by Alembic (``licsync db upgrade``); a change here needs
a new revision under ``licsync/db/migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, String, Text, text
from sqlmodel import Field, SQLModel

from licsync.db.types import UTCDateTime, _ts, metadata

__all__ = ["UTCDateTime", "metadata"]

def _json() -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=True))


def _text() -> Any:
    return Field(default=None, sa_column=Column(Text, nullable=True))


# --------------------------------------------------------------------------- directory mirror


class DirectoryUser(SQLModel, table=True):
    """The last known state of each account in the tenant, as read from Graph."""

    __tablename__ = "directory_user"
    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=64)
    upn: str | None = Field(default=None, max_length=320)
    mail: str | None = Field(default=None, max_length=320)
    display_name: str | None = Field(default=None, max_length=512)
    given_name: str | None = Field(default=None, max_length=256)
    surname: str | None = Field(default=None, max_length=256)
    employee_id: str | None = Field(default=None, max_length=128)
    user_type: str | None = Field(default=None, max_length=32)
    account_enabled: bool | None = None
    deleted: str = Field(default="none", max_length=8)  # none | soft | hard
    deleted_since: datetime | None = _ts()
    first_seen: datetime | None = _ts()
    last_changed: datetime | None = _ts()
    changed_cycle: int | None = Field(default=None)
    seen_cycle: int | None = Field(default=None)

    __table_args__ = (
        Index("ix_directory_user_tenant_changed", "tenant", "changed_cycle"),
        # Every round settles the soft-deleted against deletedItems: find them without a scan.
        Index("ix_directory_user_tenant_deleted", "tenant", "deleted"),
    )


class DirectoryChange(SQLModel, table=True):
    """One row per change the sync saw: what changed, when, in which cycle."""

    __tablename__ = "directory_change"
    seq: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    cycle_id: int
    user_id: str = Field(max_length=64)
    at: datetime | None = _ts(nullable=False)
    change: str = Field(max_length=24)  # created|updated|disabled|enabled|soft_deleted|hard_deleted|restored
    fields: dict[str, Any] | None = _json()

    __table_args__ = (Index("ix_directory_change_tenant_user", "tenant", "user_id"),)


class SyncState(SQLModel, table=True):
    __tablename__ = "sync_state"
    tenant: str = Field(primary_key=True, max_length=64)
    delta_link: str | None = _text()
    delta_link_at: datetime | None = _ts()
    last_full_at: datetime | None = _ts()
    last_success_at: datetime | None = _ts()
    last_attempt_at: datetime | None = _ts()
    consecutive_failures: int = 0
    last_error: str | None = _text()
    next_attempt_at: datetime | None = _ts()


class FullReadProgress(SQLModel, table=True):
    """A parallel full read under way (``licsync.directory_read``): what its committed chunks covered.

    ``shards`` maps each UPN prefix to the nextLink to resume it from, or ``"done"``; rows the read
    wrote carry ``seen_cycle == mark``. Deleted in the transaction that sweeps and frees seats.
    """

    __tablename__ = "full_read_progress"
    tenant: str = Field(primary_key=True, max_length=64)
    mark: int
    delta_link: str | None = _text()
    expected: int = 0
    shards: dict[str, Any] | None = _json()
    started_at: datetime | None = _ts()


class SyncCycle(SQLModel, table=True):
    __tablename__ = "sync_cycle"
    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)  # delta | full
    status: str = Field(default="running", max_length=16)  # running|ok|failed|held|dry_run|abandoned
    started_at: datetime | None = _ts(nullable=False)
    finished_at: datetime | None = _ts()
    summary: dict[str, Any] | None = _json()
    error: str | None = _text()


# --------------------------------------------------------------------------- catalogs


class Catalog(SQLModel, table=True):
    __tablename__ = "catalog"
    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=128)
    name: str = Field(default="", max_length=512)
    source: str = Field(default="csv", max_length=16)  # csv | odata
    admins: list[str] | None = _json()


class Course(SQLModel, table=True):
    __tablename__ = "course"
    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=128)
    catalog_id: str = Field(max_length=128)
    title: str = Field(default="", max_length=512)
    status: str = Field(default="published", max_length=16)  # published | unpublished | deleted
    changed_at: datetime | None = _ts()

    __table_args__ = (Index("ix_course_tenant_catalog", "tenant", "catalog_id"),)


class LearnerListEntry(SQLModel, table=True):
    __tablename__ = "learner_list"
    tenant: str = Field(primary_key=True, max_length=64)
    catalog_id: str = Field(primary_key=True, max_length=128)
    user_id: str = Field(primary_key=True, max_length=64)
    added_at: datetime | None = _ts()

    __table_args__ = (Index("ix_learner_list_tenant_user", "tenant", "user_id"),)


class Enrollment(SQLModel, table=True):
    """A learner enrollment or an admin assignment (role) of a user on a course."""

    __tablename__ = "enrollment"
    tenant: str = Field(primary_key=True, max_length=64)
    course_id: str = Field(primary_key=True, max_length=128)
    user_id: str = Field(primary_key=True, max_length=64)
    role: str = Field(primary_key=True, max_length=8)  # learner | admin
    enrolled_at: datetime | None = _ts()
    expires_at: datetime | None = _ts()
    upn: str | None = Field(default=None, max_length=320)

    __table_args__ = (Index("ix_enrollment_tenant_user", "tenant", "user_id"),)


class Activation(SQLModel, table=True):
    """An add-on identity that counts from activation until deactivation (e.g. Flow365)."""

    __tablename__ = "activation"
    tenant: str = Field(primary_key=True, max_length=64)
    identity_id: str = Field(primary_key=True, max_length=128)
    product: str = Field(default="flow365", max_length=32)
    display_name: str | None = Field(default=None, max_length=512)
    activated_at: datetime | None = _ts()
    deactivated_at: datetime | None = _ts()


# --------------------------------------------------------------------------- seats


class Seat(SQLModel, table=True):
    """One holding of a seat: open while ``released_at`` is null."""

    __tablename__ = "seat"
    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    holder: str = Field(max_length=128)
    acquired_at: datetime | None = _ts(nullable=False)
    released_at: datetime | None = _ts()
    acquire_reason: str = Field(max_length=32)
    release_reason: str | None = Field(default=None, max_length=32)
    cycle_id: int | None = None

    __table_args__ = (
        Index("ix_seat_tenant_holder", "tenant", "holder"),
        Index("ix_seat_tenant_open", "tenant", "released_at", "acquired_at"),
        Index(
            "uq_seat_open_holder",
            "tenant",
            "holder",
            unique=True,
            sqlite_where=text("released_at IS NULL"),
            postgresql_where=text("released_at IS NULL"),
        ),
    )


class SeatCatalog(SQLModel, table=True):
    """A seat holder counted in a catalog (learner enrollment there, on its learner list, course not
    deleted). Maintained for the users each plan considered, so per-catalog figures cost O(changes)."""

    __tablename__ = "seat_catalog"
    tenant: str = Field(primary_key=True, max_length=64)
    catalog_id: str = Field(primary_key=True, max_length=128)
    holder: str = Field(primary_key=True, max_length=128)

    __table_args__ = (Index("ix_seat_catalog_tenant_holder", "tenant", "holder"),)


class SeatWaitlist(SQLModel, table=True):
    """Users refused a seat (overage ``block``) who still qualify: first in line when seats free up."""

    __tablename__ = "seat_waitlist"
    tenant: str = Field(primary_key=True, max_length=64)
    holder: str = Field(primary_key=True, max_length=128)
    since: datetime | None = _ts()


class CatalogCount(SQLModel, table=True):
    """Seat holders per catalog, kept in step with ``seat_catalog`` by every apply."""

    __tablename__ = "catalog_count"
    tenant: str = Field(primary_key=True, max_length=64)
    catalog_id: str = Field(primary_key=True, max_length=128)
    consumed: int = 0


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"
    seq: int | None = Field(default=None, primary_key=True)
    at: datetime | None = _ts(nullable=False)
    tenant: str | None = Field(default=None, max_length=64)
    cycle_id: int | None = None
    actor: str = Field(default="licsync", max_length=128)
    action: str = Field(max_length=48)
    subject: str | None = Field(default=None, max_length=256)
    detail: dict[str, Any] | None = _json()

    __table_args__ = (Index("ix_audit_log_tenant_at", "tenant", "at"),)


class LedgerSnapshot(SQLModel, table=True):
    """Seat figures of one day, for the tenant (catalog_id '') and each catalog."""

    __tablename__ = "ledger_snapshot"
    tenant: str = Field(primary_key=True, max_length=64)
    day: str = Field(primary_key=True, max_length=10)  # YYYY-MM-DD (UTC)
    catalog_id: str = Field(primary_key=True, max_length=128, default="")
    purchased: int = 0
    consumed: int = 0
    available: int = 0
    overage: int = 0
    taken_at: datetime | None = _ts()


class MassFreeHold(SQLModel, table=True):
    __tablename__ = "mass_free_hold"
    id: str = Field(primary_key=True, max_length=32)
    tenant: str = Field(max_length=64, index=True)
    created_at: datetime | None = _ts(nullable=False)
    status: str = Field(default="pending", max_length=16)  # pending | approved | superseded
    reason: str = Field(default="", max_length=512)
    frees: int = 0
    plan: list[Any] | None = _json()  # [[holder, reason], ...]
    cycle_id: int | None = None
    decided_at: datetime | None = _ts()
    decided_by: str | None = Field(default=None, max_length=128)


# --------------------------------------------------------------------------- subscriptions


class Subscription(SQLModel, table=True):
    """The newest verified key of each subscription, and where it is active."""

    __tablename__ = "subscription"
    id: str = Field(primary_key=True, max_length=128)
    key: str = Field(sa_column=Column(Text, nullable=False))
    customer: str = Field(default="", max_length=256)
    seats: int = 0
    starts_at: datetime | None = _ts(nullable=False)
    ends_at: datetime | None = _ts(nullable=False)
    policy: str = Field(default="enrollment", max_length=24)
    overage: str = Field(default="grace", max_length=16)
    grace_days: int = 14
    issued_at: datetime | None = _ts(nullable=False)
    extras: dict[str, Any] | None = _json()
    tenant: str | None = Field(default=None, max_length=64, index=True)
    state: str = Field(default="active", max_length=16)  # active | deactivated
    activated_at: datetime | None = _ts()
    deactivated_at: datetime | None = _ts()


class GraceState(SQLModel, table=True):
    __tablename__ = "grace_state"
    tenant: str = Field(primary_key=True, max_length=64)
    subscription_id: str = Field(primary_key=True, max_length=128)
    state: str = Field(default="none", max_length=16)  # none | active | enforced
    reason: str | None = Field(default=None, max_length=16)  # seat_limit | expired
    started_at: datetime | None = _ts()
    ends_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()


class SubscriptionLease(SQLModel, table=True):
    """What binds a subscription to one Entra tenant on this deployment (SPEC §2).

    With an activation authority: its newest signed lease (``lease``) and the renewal bookkeeping.
    For a key issued with ``--tenant-id``: only ``tenant_id`` (no lease, no authority). ``problem``
    says why the subscription stopped licensing here (moved, revoked, wrong tenant), for status.
    """

    __tablename__ = "subscription_lease"
    subscription_id: str = Field(primary_key=True, max_length=128)
    tenant: str = Field(max_length=64, index=True)
    tenant_id: str = Field(max_length=36)
    deployment_id: str | None = Field(default=None, max_length=128)
    lease: str | None = _text()
    issued_at: datetime | None = _ts()
    expires_at: datetime | None = _ts()
    attempts: int = 0
    next_attempt_at: datetime | None = _ts()
    last_error: str | None = _text()
    problem: str | None = _text()
    updated_at: datetime | None = _ts()


# --------------------------------------------------------------------------- notifications, API, daemon


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=512, sa_column_kwargs={"unique": True})
    tenant: str | None = Field(default=None, max_length=64, index=True)
    event: str = Field(max_length=48)
    recipient: str = Field(max_length=320)
    subject: str = Field(max_length=512)
    body_text: str = Field(sa_column=Column(Text, nullable=False))
    body_html: str | None = _text()
    status: str = Field(default="pending", max_length=16, index=True)  # pending|sending|sent|failed|skipped
    attempts: int = 0
    created_at: datetime | None = _ts(nullable=False)
    next_attempt_at: datetime | None = _ts()
    sent_at: datetime | None = _ts()
    last_error: str | None = _text()
    message_id: str | None = Field(default=None, max_length=256)


class MailSend(SQLModel, table=True):
    """One message a replica is about to send through a mailbox: the mail budget Exchange imposes
    (messages a minute, recipients a day, per mailbox) is counted here, shared by every replica."""

    __tablename__ = "mail_send"
    id: int | None = Field(default=None, primary_key=True)
    sender: str = Field(max_length=320)
    sent_at: datetime | None = _ts(nullable=False)
    recipients: int = 1

    __table_args__ = (Index("ix_mail_send_sender_at", "sender", "sent_at"),)


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"
    id: str = Field(primary_key=True, max_length=32)
    token_hash: str = Field(sa_column=Column(String(128), nullable=False, unique=True))
    tenant: str = Field(max_length=64)
    role: str = Field(max_length=16)  # tenant-admin | catalog-admin | platform
    catalogs: list[str] | None = _json()
    created_at: datetime | None = _ts(nullable=False)
    revoked_at: datetime | None = _ts()
    last_used_at: datetime | None = _ts()
    label: str | None = Field(default=None, max_length=256)
    expires_at: datetime | None = _ts()  # None: never expires (`licsync token create --expires 90d`)


class Heartbeat(SQLModel, table=True):
    __tablename__ = "heartbeat"
    instance: str = Field(primary_key=True, max_length=128)
    beat_at: datetime | None = _ts(nullable=False)
    started_at: datetime | None = _ts()
    detail: dict[str, Any] | None = _json()


class NotificationMark(SQLModel, table=True):
    """Remembers per tenant which threshold or event state was last announced (upward crossings)."""

    __tablename__ = "notification_mark"
    tenant: str = Field(primary_key=True, max_length=64)
    name: str = Field(primary_key=True, max_length=64)
    value: str | None = Field(default=None, max_length=256)
    updated_at: datetime | None = _ts()


def utcnow() -> datetime:
    return datetime.now(UTC)
