"""hardening: received HTML made safe once, when stored (or a note why it is not shown)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Messages received before this revision get theirs made when read (api/services).
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("html_safe", sa.Text(), nullable=True))
        batch.add_column(sa.Column("reply_html_safe", sa.Text(), nullable=True))
        batch.add_column(sa.Column("html_note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.drop_column("html_note")
        batch.drop_column("reply_html_safe")
        batch.drop_column("html_safe")
