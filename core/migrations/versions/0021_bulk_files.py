"""bulk files: a bulk send's files, stored once for the job and added to each message as it
is sent

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bulk_file",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("job_id", sa.Uuid(), sa.ForeignKey("bulk_job.id"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_bulk_file_job_id", "bulk_file", ["job_id"])
    with op.batch_alter_table("bulk_job") as batch:
        batch.add_column(sa.Column("files", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("bulk_job") as batch:
        batch.drop_column("files")
    op.drop_index("ix_bulk_file_job_id", table_name="bulk_file")
    op.drop_table("bulk_file")
