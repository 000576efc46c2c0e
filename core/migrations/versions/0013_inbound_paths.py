"""inbound paths: mailbox sync, reply-to tokens, redirect re-checks and their explanations

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.models

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TS = core.models.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("connection") as batch:
        batch.add_column(sa.Column("check_workflow_id", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("check_sent_at", TS(timezone=True), nullable=True))
        batch.add_column(sa.Column("check_exchanger", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("redirect_told_at", TS(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("inbound_paths", sa.JSON(), nullable=False, server_default='["redirect"]')
        )
        batch.add_column(
            sa.Column(
                "import_scope", sa.String(length=16), nullable=False, server_default="replies"
            )
        )
        batch.add_column(
            sa.Column("granted_scopes", sa.JSON(), nullable=False, server_default="[]")
        )
        batch.add_column(sa.Column("forwarding_code", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("forwarding_code_at", TS(timezone=True), nullable=True))
    with op.batch_alter_table("inbound_raw") as batch:
        batch.add_column(sa.Column("provider_message_id", sa.String(length=255), nullable=True))
    op.create_index(
        "uq_inbound_raw_provider_id",
        "inbound_raw",
        ["company_id", "channel", "provider_message_id"],
        unique=True,
    )
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("received_via", sa.String(length=16), nullable=True))
    op.create_table(
        "mailbox_sync",
        sa.Column("connection_id", sa.Uuid(), sa.ForeignKey("connection.id"), primary_key=True),
        sa.Column("company_id", sa.Uuid(), sa.ForeignKey("company.id"), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("resync_since", TS(timezone=True), nullable=True),
        sa.Column("last_success_at", TS(timezone=True), nullable=True),
        sa.Column("lag_seconds", sa.Float(), nullable=True),
        sa.Column("imported", sa.Integer(), nullable=False),
        sa.Column("failing_since", TS(timezone=True), nullable=True),
        sa.Column("told_at", TS(timezone=True), nullable=True),
        sa.Column("subscription_id", sa.String(length=255), nullable=True),
        sa.Column("client_state_hash", sa.String(length=64), nullable=True),
        sa.Column("channel_expires_at", TS(timezone=True), nullable=True),
        sa.Column("created_at", TS(timezone=True), nullable=False),
        sa.Column("updated_at", TS(timezone=True), nullable=False),
    )
    op.create_index("ix_mailbox_sync_company_id", "mailbox_sync", ["company_id"])
    op.create_index("ix_mailbox_sync_subscription_id", "mailbox_sync", ["subscription_id"])
    op.create_table(
        "conversation_token",
        sa.Column("id", sa.String(length=16), primary_key=True),
        sa.Column("company_id", sa.Uuid(), sa.ForeignKey("company.id"), nullable=False),
        sa.Column("candidate_id", sa.Uuid(), sa.ForeignKey("candidate.id"), nullable=False),
        sa.Column("created_at", TS(timezone=True), nullable=False),
        sa.UniqueConstraint("company_id", "candidate_id", name="uq_conversation_token_candidate"),
    )
    op.create_index("ix_conversation_token_company_id", "conversation_token", ["company_id"])


def downgrade() -> None:
    op.drop_index("ix_conversation_token_company_id", "conversation_token")
    op.drop_table("conversation_token")
    op.drop_index("ix_mailbox_sync_subscription_id", "mailbox_sync")
    op.drop_index("ix_mailbox_sync_company_id", "mailbox_sync")
    op.drop_table("mailbox_sync")
    with op.batch_alter_table("message") as batch:
        batch.drop_column("received_via")
    op.drop_index("uq_inbound_raw_provider_id", "inbound_raw")
    with op.batch_alter_table("inbound_raw") as batch:
        batch.drop_column("provider_message_id")
    with op.batch_alter_table("connection") as batch:
        for name in (
            "forwarding_code_at",
            "forwarding_code",
            "granted_scopes",
            "import_scope",
            "inbound_paths",
            "redirect_told_at",
            "check_exchanger",
            "check_sent_at",
            "check_workflow_id",
        ):
            batch.drop_column(name)
