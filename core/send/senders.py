"""Who a message is sent from: the candidate's legal entity, then the company, then the platform;
and under which name: the employee's, the legal entity's (for its own address) or the
company's."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlmodel import Session, select

from core.db import get_or_fail
from core.models import Candidate, Company, Connection, LegalEntity, Message, SenderNameMode, User
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


@dataclass(frozen=True)
class Chosen:
    """A message's sender as chosen now: the address, the name, and how it goes out."""

    address: str
    name: str
    transport: str
    source: str
    connection_id: str | None = None


def choose(session: Session, settings: Settings, message: Message) -> Chosen:
    """The sender in effect now for `message`: the candidate's legal entity, the company, the
    platform; named after the employee (a template's or the company's mode says so), or after
    the company (the legal entity, for its own address)."""
    company = get_or_fail(session, Company, message.company_id)
    candidate = session.get(Candidate, message.candidate_id) if message.candidate_id else None
    entity_id = candidate.legal_entity_id if candidate else None
    sender = effective_sender(session, settings, company, entity_id)
    name = company.name
    mode = message.sender_name_mode or company.sender_name_mode
    if mode == SenderNameMode.EMPLOYEE and message.sender_user_id:
        user = session.get(User, message.sender_user_id)
        name = user.name if user else name
    elif sender.source == "entity" and entity_id is not None:
        entity = session.get(LegalEntity, entity_id)
        name = entity.name if entity else name
    return Chosen(
        address=sender.address,
        name=name,
        transport=sender.transport,
        source=sender.source,
        connection_id=str(sender.connection_id) if sender.connection_id else None,
    )
