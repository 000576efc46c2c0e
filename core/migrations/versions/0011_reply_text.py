"""reply text: the reply apart from its quoted history, and inline images' Content-IDs

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Messages received before this revision get theirs computed when read (api/services).
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("reply_text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("quoted_text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("signature", sa.Text(), nullable=True))
        batch.add_column(sa.Column("reply_html", sa.Text(), nullable=True))
    with op.batch_alter_table("attachment") as batch:
        batch.add_column(sa.Column("content_id", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attachment") as batch:
        batch.drop_column("content_id")
    with op.batch_alter_table("message") as batch:
        batch.drop_column("reply_html")
        batch.drop_column("signature")
        batch.drop_column("quoted_text")
        batch.drop_column("reply_text")
