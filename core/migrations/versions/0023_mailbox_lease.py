"""mailbox lease: at most a few requests at once to one mailbox's mail API (Graph: four),
across worker processes

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.models

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mailbox_lease",
        sa.Column("key", sa.String(length=80), primary_key=True),
        sa.Column("slot", sa.Integer(), primary_key=True),
        sa.Column("holder", sa.String(length=32), nullable=True),
        sa.Column("until", core.models.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("mailbox_lease")
