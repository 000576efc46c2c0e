"""large files: a Microsoft connection that sends files over Graph's 4 MB request through
drafts and upload sessions (its sign-in asks for Mail.ReadWrite)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connection") as batch:
        batch.add_column(
            sa.Column("large_files", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("connection") as batch:
        batch.drop_column("large_files")
