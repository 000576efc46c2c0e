"""the round-trip test: the redirect leg on connections

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connection") as batch:
        batch.add_column(
            sa.Column(
                "redirect_status",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="not_checked",
            )
        )
        batch.add_column(
            sa.Column("redirect_checked_at", core.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("redirect_detail", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column(
                "check_token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True
            )
        )
        batch.create_index("ix_connection_check_token_hash", ["check_token_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("connection") as batch:
        batch.drop_index("ix_connection_check_token_hash")
        batch.drop_column("check_token_hash")
        batch.drop_column("redirect_detail")
        batch.drop_column("redirect_checked_at")
        batch.drop_column("redirect_status")
