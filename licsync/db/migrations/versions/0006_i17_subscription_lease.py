"""subscription lease: the activation authority's lease and tenant binding of a subscription

Revision ID: i17_subscription_lease
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import licsync.db.models

revision = "i17_subscription_lease"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscription_lease",
        sa.Column("subscription_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("tenant_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("deployment_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("lease", sa.Text(), nullable=True),
        sa.Column("issued_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.Column("expires_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column("updated_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("subscription_id", name=op.f("pk_subscription_lease")),
    )
    op.create_index(op.f("ix_subscription_lease_tenant"), "subscription_lease", ["tenant"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_subscription_lease_tenant"), table_name="subscription_lease")
    op.drop_table("subscription_lease")
