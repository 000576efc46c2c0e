"""quota windows: sends counted over a rolling 24 hours (messages and recipients), not per UTC day

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "throttle_send",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
    )
    op.create_index("ix_throttle_send_key_at", "throttle_send", ["key", "at"])
    with op.batch_alter_table("mailbox_throttle") as batch:
        batch.drop_column("day_count")
        batch.drop_column("day")
    with op.batch_alter_table("bulk_job") as batch:
        batch.add_column(sa.Column("next_send_reason", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bulk_job") as batch:
        batch.drop_column("next_send_reason")
    with op.batch_alter_table("mailbox_throttle") as batch:
        batch.add_column(sa.Column("day", sa.String(length=10), nullable=False, server_default=""))
        batch.add_column(sa.Column("day_count", sa.Integer(), nullable=False, server_default="0"))
    op.drop_index("ix_throttle_send_key_at", "throttle_send")
    op.drop_table("throttle_send")
