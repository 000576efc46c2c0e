"""attached and forwarded messages: who wrote them

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attachment") as batch:
        batch.add_column(
            sa.Column(
                "original_sender", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True
            )
        )

    with op.batch_alter_table("message") as batch:
        batch.add_column(
            sa.Column("forwarded_from", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True)
        )
        batch.add_column(
            sa.Column(
                "forwarded_from_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.drop_column("forwarded_from_name")
        batch.drop_column("forwarded_from")
    with op.batch_alter_table("attachment") as batch:
        batch.drop_column("original_sender")
