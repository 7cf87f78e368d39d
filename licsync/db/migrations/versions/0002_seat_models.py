"""seat models: the tables of the live_enrollment, first_access and role counting models

live_enrollment: org, org_catalog, overage_tier_state, subscription_upgrade.
first_access: learner_activity, first_access, duplicate_candidate.
role: seat_pool, role_assignment, pool_seat, sign_in_activity.
(The seats of live_enrollment and first_access are ordinary rows of ``seat``.)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import licsync.db.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "duplicate_candidate",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("activity_a", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("activity_b", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("matched_on", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("found_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.Column("decided_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duplicate_candidate")),
        sa.UniqueConstraint(
            "tenant", "activity_a", "activity_b", name=op.f("uq_duplicate_candidate_tenant_activity_a_activity_b")
        ),
    )
    with op.batch_alter_table("duplicate_candidate", schema=None) as batch_op:
        batch_op.create_index("ix_duplicate_candidate_tenant_status", ["tenant", "status"], unique=False)

    op.create_table(
        "first_access",
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("subscription_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("period_start", licsync.db.models.UTCDateTime(), nullable=False),
        sa.Column("activity_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("content_id", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("content_title", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("first_access_at", licsync.db.models.UTCDateTime(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("recorded_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint(
            "tenant", "subscription_id", "period_start", "activity_id", name=op.f("pk_first_access")
        ),
    )
    op.create_table(
        "learner_activity",
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("activity_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("first_name", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
        sa.Column("last_name", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("first_seen_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.Column("last_seen_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.Column("launches", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "activity_id", name=op.f("pk_learner_activity")),
    )
    op.create_table(
        "org",
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("parent_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("user_limit", sa.Integer(), nullable=True),
        sa.Column("imported_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "id", name=op.f("pk_org")),
    )
    op.create_table(
        "org_catalog",
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("catalog_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "catalog_id", name=op.f("pk_org_catalog")),
    )
    op.create_table(
        "overage_tier_state",
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("subscription_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("tier", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("since", licsync.db.models.UTCDateTime(), nullable=True),
        sa.Column("minor_notice_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.Column("major_notice_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.Column("no_upgrade_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.Column("updated_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "subscription_id", name=op.f("pk_overage_tier_state")),
    )
    op.create_table(
        "pool_seat",
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("pool", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("acquired_at", licsync.db.models.UTCDateTime(), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "pool", "user_id", name=op.f("pk_pool_seat")),
    )
    with op.batch_alter_table("pool_seat", schema=None) as batch_op:
        batch_op.create_index("ix_pool_seat_tenant_user", ["tenant", "user_id"], unique=False)

    op.create_table(
        "role_assignment",
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("assigned_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "user_id", "role", name=op.f("pk_role_assignment")),
    )
    op.create_table(
        "seat_pool",
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("pool", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("updated_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "pool", name=op.f("pk_seat_pool")),
    )
    op.create_table(
        "sign_in_activity",
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("last_sign_in_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.Column("read_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "user_id", name=op.f("pk_sign_in_activity")),
    )
    op.create_table(
        "subscription_upgrade",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("subscription_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("year_start", licsync.db.models.UTCDateTime(), nullable=False),
        sa.Column("from_seats", sa.Integer(), nullable=False),
        sa.Column("to_seats", sa.Integer(), nullable=False),
        sa.Column("due_at", licsync.db.models.UTCDateTime(), nullable=False),
        sa.Column("effective_at", licsync.db.models.UTCDateTime(), nullable=False),
        sa.Column("pro_rata", sa.Float(), nullable=False),
        sa.Column("days_left", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_upgrade")),
    )
    with op.batch_alter_table("subscription_upgrade", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subscription_upgrade_tenant_sub", ["tenant", "subscription_id", "year_start"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("subscription_upgrade", schema=None) as batch_op:
        batch_op.drop_index("ix_subscription_upgrade_tenant_sub")

    op.drop_table("subscription_upgrade")
    op.drop_table("sign_in_activity")
    op.drop_table("seat_pool")
    op.drop_table("role_assignment")
    with op.batch_alter_table("pool_seat", schema=None) as batch_op:
        batch_op.drop_index("ix_pool_seat_tenant_user")

    op.drop_table("pool_seat")
    op.drop_table("overage_tier_state")
    op.drop_table("org_catalog")
    op.drop_table("org")
    op.drop_table("learner_activity")
    op.drop_table("first_access")
    with op.batch_alter_table("duplicate_candidate", schema=None) as batch_op:
        batch_op.drop_index("ix_duplicate_candidate_tenant_status")

    op.drop_table("duplicate_candidate")
