"""mail budget shared by replicas (issue 15)

Revision ID: i15_mail_budget
Revises: i17_subscription_lease
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import licsync.db.models

revision = "i15_mail_budget"
down_revision = "i17_subscription_lease"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mail_send",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("sent_at", licsync.db.models.UTCDateTime(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_send")),
    )
    op.create_index("ix_mail_send_sender_at", "mail_send", ["sender", "sent_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_mail_send_sender_at", table_name="mail_send")
    op.drop_table("mail_send")
