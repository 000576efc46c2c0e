"""Legal entities: the names a company sends under, each with its own sender and signature.
Every change commits with its audit line."""

from __future__ import annotations

from sqlmodel import Session, col, select

from api.schemas import LegalEntityCreate, LegalEntityUpdate
from api.services.common import get_owned
from api.services.templates import set_signature
from core import audit
from core.errors import Refused
from core.models import LegalEntity, User


def create(session: Session, user: User, body: LegalEntityCreate) -> LegalEntity:
    entity = LegalEntity(company_id=user.company_id, name=body.name.strip())
    session.add(entity)
    audit.record(
        session,
        company_id=user.company_id,
        user_id=user.id,
        action="legal_entity.create",
        target=f"legal_entity:{entity.id}",
        name=entity.name,
    )
    session.commit()
    return entity


def all_of(session: Session, user: User) -> list[LegalEntity]:
    return list(
        session.exec(
            select(LegalEntity)
            .where(LegalEntity.company_id == user.company_id)
            .order_by(col(LegalEntity.created_at), col(LegalEntity.id))
        ).all()
    )


def update(
    session: Session, user: User, legal_entity_id: str, body: LegalEntityUpdate
) -> LegalEntity:
    entity = get_owned(session, LegalEntity, legal_entity_id, user.company_id, "legal entity")
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes:
        if body.name is None:
            raise Refused("name: must not be null")
        entity.name = body.name.strip()
    set_signature(entity, changes)
    session.add(entity)
    audit.record(
        session,
        company_id=user.company_id,
        user_id=user.id,
        action="legal_entity.update",
        target=f"legal_entity:{entity.id}",
        fields=sorted(changes),
    )
    session.commit()
    return entity
