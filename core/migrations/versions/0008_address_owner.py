"""address ownership: one proving company per custom address

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "address_owner",
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(length=320), primary_key=True),
        sa.Column("company_id", sa.Uuid(), sa.ForeignKey("company.id"), nullable=False),
        sa.Column("connection_id", sa.Uuid(), sa.ForeignKey("connection.id"), nullable=False),
        sa.Column("proven_at", core.models.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_address_owner_company_id", "address_owner", ["company_id"])
    # Connections verified before this table: the earliest proof of each address owns it, as
    # long as its connection was not let go (disabled or cancelled).
    connection = sa.table(
        "connection",
        sa.column("id", sa.Uuid()),
        sa.column("company_id", sa.Uuid()),
        sa.column("custom_address", sa.String()),
        sa.column("status", sa.String()),
        sa.column("redirect_status", sa.String()),
        sa.column("redirect_checked_at", core.models.UTCDateTime(timezone=True)),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            connection.c.id,
            connection.c.company_id,
            connection.c.custom_address,
            connection.c.redirect_checked_at,
        )
        .where(
            connection.c.redirect_status == "verified",
            connection.c.status.notin_(["disabled", "cancelled", "failed", "expired"]),
        )
        .order_by(connection.c.redirect_checked_at)
    ).all()
    owners: dict[str, dict] = {}
    for connection_id, company_id, address, checked_at in rows:
        owners.setdefault(
            address.lower(),
            {
                "address": address.lower(),
                "company_id": company_id,
                "connection_id": connection_id,
                "proven_at": checked_at or core.models.utcnow(),
            },
        )
    if owners:
        owner = sa.table(
            "address_owner",
            sa.column("address", sa.String()),
            sa.column("company_id", sa.Uuid()),
            sa.column("connection_id", sa.Uuid()),
            sa.column("proven_at", core.models.UTCDateTime(timezone=True)),
        )
        op.bulk_insert(owner, list(owners.values()))


def downgrade() -> None:
    op.drop_index("ix_address_owner_company_id", table_name="address_owner")
    op.drop_table("address_owner")
