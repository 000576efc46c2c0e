"""compose: stored templates, signatures, languages, send later and undo, interview
invitations

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.models import UTCDateTime as UtcDateTime

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_template",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("company_id", sa.Uuid(), sa.ForeignKey("company.id"), nullable=False),
        sa.Column("legal_entity_id", sa.Uuid(), sa.ForeignKey("legal_entity.id"), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("sender", sa.String(16), nullable=True),
        sa.Column("attachments", sa.JSON(), nullable=True),
        sa.Column("created_by_user_id", sa.Uuid(), sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_message_template_company_id", "message_template", ["company_id"])
    op.create_table(
        "invitation",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("company_id", sa.Uuid(), sa.ForeignKey("company.id"), nullable=False),
        sa.Column("candidate_id", sa.Uuid(), nullable=True),
        sa.Column("uid", sa.String(255), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("answer", sa.String(16), nullable=True),
        sa.Column("answered_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("company_id", "uid", name="uq_invitation_company_uid"),
    )
    op.create_index("ix_invitation_company_id", "invitation", ["company_id"])
    op.create_table(
        "upload",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("company_id", sa.Uuid(), sa.ForeignKey("company.id"), nullable=False),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_upload_company_id", "upload", ["company_id"])
    op.create_index("ix_upload_created_at", "upload", ["created_at"])
    op.create_index("ix_invitation_candidate_id", "invitation", ["candidate_id"])
    with op.batch_alter_table("company") as batch:
        batch.add_column(sa.Column("default_language", sa.String(35), nullable=True))
        batch.add_column(sa.Column("undo_seconds", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("signature_text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("signature_html", sa.Text(), nullable=True))
    with op.batch_alter_table("legal_entity") as batch:
        batch.add_column(sa.Column("signature_text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("signature_html", sa.Text(), nullable=True))
    with op.batch_alter_table("app_user") as batch:
        batch.add_column(sa.Column("title", sa.String(200), nullable=True))
        batch.add_column(sa.Column("signature_text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("signature_html", sa.Text(), nullable=True))
    with op.batch_alter_table("candidate") as batch:
        batch.add_column(sa.Column("language", sa.String(35), nullable=True))
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=True))
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("send_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("template_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("template_language", sa.String(35), nullable=True))
        batch.add_column(sa.Column("sender_name_mode", sa.String(16), nullable=True))
        batch.add_column(sa.Column("invitation", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("has_attachments", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("bulk_job") as batch:
        batch.add_column(sa.Column("send_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("template_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("sender_name_mode", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bulk_job") as batch:
        batch.drop_column("sender_name_mode")
        batch.drop_column("template_id")
        batch.drop_column("send_at")
    with op.batch_alter_table("message") as batch:
        for name in (
            "has_attachments", "invitation", "sender_name_mode", "template_language",
            "template_id",
        ):  # fmt: skip
            batch.drop_column(name)
        batch.drop_column("send_at")
    with op.batch_alter_table("candidate") as batch:
        batch.drop_column("timezone")
        batch.drop_column("language")
    with op.batch_alter_table("app_user") as batch:
        for name in ("signature_html", "signature_text", "title"):
            batch.drop_column(name)
    with op.batch_alter_table("legal_entity") as batch:
        batch.drop_column("signature_html")
        batch.drop_column("signature_text")
    with op.batch_alter_table("company") as batch:
        batch.drop_column("signature_html")
        batch.drop_column("signature_text")
        batch.drop_column("undo_seconds")
        batch.drop_column("default_language")
    op.drop_table("upload")
    op.drop_table("invitation")
    op.drop_table("message_template")
