"""dkim check: the DKIM signatures of a connection's round-trip test message, its last
deliverability report, and its own 24-hour quota

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connection") as batch:
        batch.add_column(sa.Column("dkim_check", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("deliverability", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("quota_messages_per_day", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("quota_recipients_per_day", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connection") as batch:
        batch.drop_column("quota_recipients_per_day")
        batch.drop_column("quota_messages_per_day")
        batch.drop_column("deliverability")
        batch.drop_column("dkim_check")
