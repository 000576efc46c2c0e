"""unsubscribe: whether a bulk job carries one-click unsubscribe headers

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bulk_job") as batch:
        batch.add_column(
            sa.Column("unsubscribe", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("bulk_job") as batch:
        batch.drop_column("unsubscribe")
