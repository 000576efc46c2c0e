"""events (the transactional outbox), webhook endpoints and deliveries, reply notifications

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

S = sqlmodel.sql.sqltypes.AutoString
TS = core.models.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("app_user") as batch:
        batch.add_column(
            sa.Column("notify_replies", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.create_table(
        "company_privacy",
        sa.Column("company_id", sa.Uuid(), sa.ForeignKey("company.id"), primary_key=True),
        sa.Column(
            "notification_names_candidate", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
        sa.Column("updated_at", TS(timezone=True), nullable=False),
    )
    op.create_table(
        "event",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("company_id", sa.Uuid(), sa.ForeignKey("company.id"), nullable=False),
        sa.Column("type", S(length=64), nullable=False),
        sa.Column("created_at", TS(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("personal", sa.JSON(), nullable=True),
        sa.Column("candidate_id", sa.Uuid(), nullable=True),
        sa.Column("endpoint_id", sa.Uuid(), nullable=True),
    )
    op.create_index("ix_event_seq", "event", ["seq"], unique=True)
    op.create_index("ix_event_company_id", "event", ["company_id"])
    op.create_index("ix_event_type", "event", ["type"])
    op.create_index("ix_event_created_at", "event", ["created_at"])
    op.create_index("ix_event_candidate_id", "event", ["candidate_id"])
    op.create_index("ix_event_company_seq", "event", ["company_id", "seq"])
    op.create_table(
        "event_sequence",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("last", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(
        sa.table(
            "event_sequence", sa.column("id", sa.Integer()), sa.column("last", sa.BigInteger())
        ),
        [{"id": 1, "last": 0}],
    )
    op.create_table(
        "event_consumer",
        sa.Column("name", S(length=64), primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "webhook_endpoint",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("company_id", sa.Uuid(), sa.ForeignKey("company.id"), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("description", S(length=500), nullable=False),
        sa.Column("include_personal_data", sa.Boolean(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("disabled_at", TS(timezone=True), nullable=True),
        sa.Column("secret_blob", sa.LargeBinary(), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("failing_since", TS(timezone=True), nullable=True),
        sa.Column("workflow_id", S(length=200), nullable=False),
        sa.Column("created_at", TS(timezone=True), nullable=False),
        sa.Column("updated_at", TS(timezone=True), nullable=False),
    )
    op.create_index("ix_webhook_endpoint_company_id", "webhook_endpoint", ["company_id"])
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("endpoint_id", sa.Uuid(), sa.ForeignKey("webhook_endpoint.id"), nullable=False),
        sa.Column("event_id", sa.Uuid(), sa.ForeignKey("event.id"), nullable=False),
        sa.Column("company_id", sa.Uuid(), sa.ForeignKey("company.id"), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("status", S(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS(timezone=True), nullable=True),
        sa.Column("created_at", TS(timezone=True), nullable=False),
        sa.Column("delivered_at", TS(timezone=True), nullable=True),
        sa.UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_delivery_event"),
    )
    for column in ("endpoint_id", "event_id", "company_id", "status", "next_attempt_at"):
        op.create_index(f"ix_webhook_delivery_{column}", "webhook_delivery", [column])
    op.create_table(
        "webhook_attempt",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("delivery_id", sa.Uuid(), sa.ForeignKey("webhook_delivery.id"), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), sa.ForeignKey("webhook_endpoint.id"), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("attempted_at", TS(timezone=True), nullable=False),
        sa.Column("outcome", S(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=False),
    )
    for column in ("delivery_id", "endpoint_id", "event_id", "attempted_at"):
        op.create_index(f"ix_webhook_attempt_{column}", "webhook_attempt", [column])


def downgrade() -> None:
    op.drop_table("webhook_attempt")
    op.drop_table("webhook_delivery")
    op.drop_table("webhook_endpoint")
    op.drop_table("event_consumer")
    op.drop_table("event_sequence")
    op.drop_table("event")
    op.drop_table("company_privacy")
    with op.batch_alter_table("app_user") as batch:
        batch.drop_column("notify_replies")
