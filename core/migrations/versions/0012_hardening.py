"""hardening: received HTML made safe once, when stored (or a note why it is not shown); a bulk
message put off by its recipient's server, retried on its own; who really sent received mail

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.models

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TS = core.models.UTCDateTime


def upgrade() -> None:
    # Messages received before this revision get theirs made when read (api/services).
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("html_safe", sa.Text(), nullable=True))
        batch.add_column(sa.Column("reply_html_safe", sa.Text(), nullable=True))
        batch.add_column(sa.Column("html_note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("next_attempt_at", TS(timezone=True), nullable=True))
        batch.add_column(sa.Column("deferred_since", TS(timezone=True), nullable=True))
        batch.add_column(sa.Column("sender_auth", sa.Text(), nullable=True))
        batch.add_column(sa.Column("sender_verified", sa.Boolean(), nullable=True))
    with op.batch_alter_table("inbound_raw") as batch:
        batch.add_column(sa.Column("client_ip", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("helo", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbound_raw") as batch:
        batch.drop_column("helo")
        batch.drop_column("client_ip")
    with op.batch_alter_table("message") as batch:
        batch.drop_column("sender_verified")
        batch.drop_column("sender_auth")
        batch.drop_column("deferred_since")
        batch.drop_column("next_attempt_at")
        batch.drop_column("html_note")
        batch.drop_column("reply_html_safe")
        batch.drop_column("html_safe")
