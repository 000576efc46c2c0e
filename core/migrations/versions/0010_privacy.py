"""privacy: erasure, retention rules, in-flight attempts

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.models

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TS = core.models.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("candidate") as batch:
        batch.add_column(sa.Column("erasure_requested_at", TS(timezone=True), nullable=True))
        batch.add_column(sa.Column("erased_at", TS(timezone=True), nullable=True))
        batch.add_column(sa.Column("retain_until", TS(timezone=True), nullable=True))
        batch.add_column(sa.Column("consent_asked_at", TS(timezone=True), nullable=True))
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("attempt_started_at", TS(timezone=True), nullable=True))
        batch.add_column(sa.Column("erased_at", TS(timezone=True), nullable=True))
    with op.batch_alter_table("company_privacy") as batch:
        batch.add_column(sa.Column("erase_after_days_closed", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column(
                "unassigned_retention_days", sa.Integer(), nullable=False, server_default="180"
            )
        )
        batch.add_column(sa.Column("consent_extension_days", sa.Integer(), nullable=True))
    op.create_table(
        "erasure",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("company_id", sa.Uuid(), sa.ForeignKey("company.id"), nullable=False),
        sa.Column("candidate_id", sa.Uuid(), sa.ForeignKey("candidate.id"), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("requested_by_user_id", sa.Uuid(), sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("messages_cancelled", sa.Integer(), nullable=False),
        sa.Column("messages_erased", sa.Integer(), nullable=False),
        sa.Column("attachments_deleted", sa.Integer(), nullable=False),
        sa.Column("raw_messages_erased", sa.Integer(), nullable=False),
        sa.Column("outbox_copies_deleted", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", TS(timezone=True), nullable=False),
        sa.Column("finished_at", TS(timezone=True), nullable=True),
    )
    op.create_index("ix_erasure_company_id", "erasure", ["company_id"])
    op.create_index("ix_erasure_candidate_id", "erasure", ["candidate_id"], unique=True)
    # An erasure masks the audit lines about the candidate and their messages, by target.
    op.create_index("ix_audit_event_target", "audit_event", ["target"])
    op.create_index("ix_message_company_candidate", "message", ["company_id", "candidate_id"])
    # The reply notifications' cursor, from the events that exist now: a new database notifies
    # from its first reply (the relay would otherwise start at whatever it first saw).
    op.execute(
        "INSERT INTO event_consumer (name, last_seq) "
        "SELECT 'reply-notifications', COALESCE(MAX(seq), 0) FROM event "
        "WHERE NOT EXISTS (SELECT 1 FROM event_consumer WHERE name = 'reply-notifications')"
    )


def downgrade() -> None:
    op.drop_index("ix_message_company_candidate", table_name="message")
    op.drop_index("ix_audit_event_target", table_name="audit_event")
    op.drop_table("erasure")
    with op.batch_alter_table("company_privacy") as batch:
        batch.drop_column("consent_extension_days")
        batch.drop_column("unassigned_retention_days")
        batch.drop_column("erase_after_days_closed")
    with op.batch_alter_table("message") as batch:
        batch.drop_column("erased_at")
        batch.drop_column("attempt_started_at")
    with op.batch_alter_table("candidate") as batch:
        batch.drop_column("consent_asked_at")
        batch.drop_column("retain_until")
        batch.drop_column("erased_at")
        batch.drop_column("erasure_requested_at")
