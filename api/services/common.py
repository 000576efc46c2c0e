"""Shared by the services: company-scoped lookups. Anything outside the caller's company is
simply not found, like an id that does not exist or is not an id at all."""

from __future__ import annotations

import uuid
from typing import TypeVar

from sqlmodel import Session, SQLModel

from core.errors import NotFound, Refused
from core.models import LegalEntity

T = TypeVar("T", bound=SQLModel)


def parse_id(value: str, what: str) -> uuid.UUID:
    """Ids in paths: a malformed one is simply not found, like another company's."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} not found") from None


def get_owned(
    session: Session, model: type[T], raw_id: str | uuid.UUID, company_id: uuid.UUID, what: str
) -> T:
    object_id = raw_id if isinstance(raw_id, uuid.UUID) else parse_id(raw_id, what)
    row = session.get(model, object_id)
    if row is None or row.company_id != company_id:  # type: ignore[attr-defined]
        raise NotFound(f"{what} not found")
    return row


def check_entity(
    session: Session, company_id: uuid.UUID, legal_entity_id: uuid.UUID | None
) -> None:
    if legal_entity_id is None:
        return
    entity = session.get(LegalEntity, legal_entity_id)
    if entity is None or entity.company_id != company_id:
        raise Refused("legal_entity_id: no such legal entity in your company")
