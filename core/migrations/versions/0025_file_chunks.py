"""file chunks: a large file (an upload, a message's attachment) stored as sealed chunks of
1 MiB, read and copied one chunk at a time; a single send with files keeps its MIME without
them and adds them from storage as it is sent

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "file_chunk",
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("file_id", "seq"),
    )
    for table in ("upload", "attachment"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("chunks", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("message") as batch:
        batch.add_column(
            sa.Column("mime_without_files", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.drop_column("mime_without_files")
    for table in ("upload", "attachment"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("chunks")
    op.drop_table("file_chunk")
