"""send mode: a Microsoft connection sends with the signed-in user's delegated Mail.Send or with
the application permission Mail.Send its tenant's admin scoped to the mailbox (RBAC for
Applications)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connection") as batch:
        batch.add_column(
            sa.Column("send_mode", sa.String(length=16), nullable=False, server_default="delegated")
        )


def downgrade() -> None:
    with op.batch_alter_table("connection") as batch:
        batch.drop_column("send_mode")
