"""suppressions: each company's suppression list, and the soft bounces that lead to it

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.models

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TS = core.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "suppression",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("company_id", sa.Uuid(), sa.ForeignKey("company.id"), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=True),
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_by_user_id", sa.Uuid(), sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("created_at", TS(timezone=True), nullable=False),
        sa.UniqueConstraint("company_id", "address_hash", name="uq_suppression_company_address"),
    )
    op.create_index("ix_suppression_company_id", "suppression", ["company_id"])
    op.create_table(
        "soft_bounce",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("company_id", sa.Uuid(), sa.ForeignKey("company.id"), nullable=False),
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS(timezone=True), nullable=False),
    )
    op.create_index("ix_soft_bounce_company_address", "soft_bounce", ["company_id", "address_hash"])


def downgrade() -> None:
    op.drop_index("ix_soft_bounce_company_address", "soft_bounce")
    op.drop_table("soft_bounce")
    op.drop_index("ix_suppression_company_id", "suppression")
    op.drop_table("suppression")
