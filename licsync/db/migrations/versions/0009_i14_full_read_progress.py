"""full read progress: resumable parallel full reads (issue 14)

Revision ID: i14_full_read_progress
Revises: i18_token_expiry
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import licsync.db.models

revision = "i14_full_read_progress"
down_revision = "i18_token_expiry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "full_read_progress",
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("mark", sa.Integer(), nullable=False),
        sa.Column("delta_link", sa.Text(), nullable=True),
        sa.Column("expected", sa.Integer(), nullable=False),
        sa.Column("shards", sa.JSON(), nullable=True),
        sa.Column("started_at", licsync.db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_full_read_progress")),
    )


def downgrade() -> None:
    op.drop_table("full_read_progress")
