"""Who a message is sent from: the candidate's legal entity, then the company, then the platform."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlmodel import Session, select

from core.models import Company, Connection
from core.settings import Settings
from core.statuses import LIVE_STATUSES


@dataclass(frozen=True)
class EffectiveSender:
    address: str
    transport: str  # "platform", or the connection kind: smtp, google, microsoft
    source: str  # entity, company or platform
    connection_id: uuid.UUID | None = None


def live_connection(
    session: Session, company_id: uuid.UUID, legal_entity_id: uuid.UUID | None
) -> Connection | None:
    query = select(Connection).where(
        Connection.company_id == company_id,
        Connection.status.in_(LIVE_STATUSES),  # type: ignore[attr-defined]
        Connection.legal_entity_id == legal_entity_id
        if legal_entity_id
        else Connection.legal_entity_id.is_(None),  # type: ignore[union-attr]
    )
    return session.exec(query).first()


def effective_sender(
    session: Session, settings: Settings, company: Company, legal_entity_id: uuid.UUID | None
) -> EffectiveSender:
    if legal_entity_id is not None:
        connection = live_connection(session, company.id, legal_entity_id)
        if connection is not None:
            return EffectiveSender(
                connection.custom_address, connection.kind, "entity", connection.id
            )
    connection = live_connection(session, company.id, None)
    if connection is not None:
        return EffectiveSender(connection.custom_address, connection.kind, "company", connection.id)
    return EffectiveSender(settings.hosted_address(company.slug), "platform", "platform")
