"""Tables of the ``live_enrollment``, ``first_access`` and ``role`` seat models (SPEC §1).

Imported at the end of ``licsync.db.models`` so that they share its metadata and Alembic sees
them; created by revision ``0002``. The seats of ``live_enrollment`` and ``first_access`` are
ordinary rows of the ``seat`` table (so status, grace, the ledger and access decisions work
unchanged); the tables here hold what those models add. ``role`` keeps its seats per pool in
``pool_seat``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from licsync.db.types import UTCDateTime, _ts, _ts_required

# --------------------------------------------------------------------------- live_enrollment


class Organisation(SQLModel, table=True):
    """An organisation of the LXP license report; ``parent_id`` makes the tree."""

    __tablename__ = "org"
    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=128)
    name: str = Field(max_length=512)
    parent_id: str | None = Field(default=None, max_length=128)
    user_limit: int | None = None  # None: the sum of its children's
    imported_at: datetime | None = _ts()


class OrgCatalog(SQLModel, table=True):
    """Which organisation a catalog belongs to (at most one)."""

    __tablename__ = "org_catalog"
    tenant: str = Field(primary_key=True, max_length=64)
    catalog_id: str = Field(primary_key=True, max_length=128)
    org_id: str = Field(max_length=128)


class OverageTierState(SQLModel, table=True):
    """The current overage episode of a ``tiered`` subscription and the notices given in it."""

    __tablename__ = "overage_tier_state"
    tenant: str = Field(primary_key=True, max_length=64)
    subscription_id: str = Field(primary_key=True, max_length=128)
    tier: str = Field(default="none", max_length=8)  # none | minor | major (as last evaluated)
    since: datetime | None = _ts()
    minor_notice_at: datetime | None = _ts()
    major_notice_at: datetime | None = _ts()
    no_upgrade_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()


class SubscriptionUpgrade(SQLModel, table=True):
    """An automatic upgrade to the next seat tier, pro rata for the rest of the license year."""

    __tablename__ = "subscription_upgrade"
    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    subscription_id: str = Field(max_length=128)
    year_start: datetime | None = _ts_required()
    from_seats: int
    to_seats: int
    due_at: datetime | None = _ts_required()
    effective_at: datetime | None = _ts_required()
    pro_rata: float
    days_left: int

    __table_args__ = (Index("ix_subscription_upgrade_tenant_sub", "tenant", "subscription_id", "year_start"),)


# --------------------------------------------------------------------------- first_access


class LearnerActivity(SQLModel, table=True):
    """What is known about the learner behind one activity id (SCORM id)."""

    __tablename__ = "learner_activity"
    tenant: str = Field(primary_key=True, max_length=64)
    activity_id: str = Field(primary_key=True, max_length=128)
    user_id: str | None = Field(default=None, max_length=64)
    first_name: str | None = Field(default=None, max_length=256)
    last_name: str | None = Field(default=None, max_length=256)
    email: str | None = Field(default=None, max_length=320)
    first_seen_at: datetime | None = _ts()
    last_seen_at: datetime | None = _ts()
    launches: int = 0


class FirstAccessConsumption(SQLModel, table=True):
    """The seat an activity id consumed in one license period: never freed within it."""

    __tablename__ = "first_access"
    tenant: str = Field(primary_key=True, max_length=64)
    subscription_id: str = Field(primary_key=True, max_length=128)
    period_start: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), primary_key=True))
    activity_id: str = Field(primary_key=True, max_length=128)
    user_id: str | None = Field(default=None, max_length=64)
    content_id: str = Field(max_length=512)
    content_title: str = Field(default="", max_length=512)
    first_access_at: datetime | None = _ts_required()
    source: str = Field(default="csv", max_length=8)  # csv | xapi
    recorded_at: datetime | None = _ts()


class DuplicateCandidate(SQLModel, table=True):
    """Two activity ids that may be one person; an admin confirms or dismisses, nothing is merged."""

    __tablename__ = "duplicate_candidate"
    id: str = Field(primary_key=True, max_length=16)
    tenant: str = Field(max_length=64)
    activity_a: str = Field(max_length=128)
    activity_b: str = Field(max_length=128)
    matched_on: str = Field(max_length=64)  # name,email,directory_user
    status: str = Field(default="candidate", max_length=16)  # candidate | confirmed | dismissed
    found_at: datetime | None = _ts()
    decided_at: datetime | None = _ts()
    decided_by: str | None = Field(default=None, max_length=128)

    __table_args__ = (
        UniqueConstraint("tenant", "activity_a", "activity_b"),
        Index("ix_duplicate_candidate_tenant_status", "tenant", "status"),
    )


# --------------------------------------------------------------------------- role


class SeatPool(SQLModel, table=True):
    """A product pool of a tenant; its row is the lock that keeps the pool from over-allocation."""

    __tablename__ = "seat_pool"
    tenant: str = Field(primary_key=True, max_length=64)
    pool: str = Field(primary_key=True, max_length=64)
    total: int = 0
    updated_at: datetime | None = _ts()


class RoleAssignment(SQLModel, table=True):
    __tablename__ = "role_assignment"
    tenant: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(primary_key=True, max_length=64)
    role: str = Field(primary_key=True, max_length=64)
    assigned_at: datetime | None = _ts()


class PoolSeat(SQLModel, table=True):
    """A seat of a pool held by a user (while a role of theirs needs the pool)."""

    __tablename__ = "pool_seat"
    tenant: str = Field(primary_key=True, max_length=64)
    pool: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(primary_key=True, max_length=64)
    acquired_at: datetime | None = _ts_required()
    role: str = Field(default="", max_length=64)  # the role that took it

    __table_args__ = (Index("ix_pool_seat_tenant_user", "tenant", "user_id"),)


class SignInActivity(SQLModel, table=True):
    """The last sign-in of each directory user, read from Graph ``signInActivity``."""

    __tablename__ = "sign_in_activity"
    tenant: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(primary_key=True, max_length=64)
    last_sign_in_at: datetime | None = _ts()
    read_at: datetime | None = _ts()
