from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlmodel import col, select

from api.deps import CurrentUser, SessionDep, SettingsAdmin
from api.routers.common import get_owned
from api.schemas import LegalEntityCreate, LegalEntityPublic, LegalEntityUpdate
from api.services.templates import set_signature
from core import audit
from core.models import LegalEntity

router = APIRouter(prefix="/v1/legal-entities", tags=["legal entities"])


@router.post("", response_model=LegalEntityPublic, status_code=status.HTTP_201_CREATED)
def create_legal_entity(
    body: LegalEntityCreate, user: SettingsAdmin, session: SessionDep
) -> LegalEntity:
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


@router.get("", response_model=list[LegalEntityPublic])
def list_legal_entities(user: CurrentUser, session: SessionDep) -> list[LegalEntity]:
    return list(
        session.exec(
            select(LegalEntity)
            .where(LegalEntity.company_id == user.company_id)
            .order_by(col(LegalEntity.created_at), col(LegalEntity.id))
        ).all()
    )


@router.patch("/{legal_entity_id}", response_model=LegalEntityPublic)
def update_legal_entity(
    legal_entity_id: str, body: LegalEntityUpdate, user: SettingsAdmin, session: SessionDep
) -> LegalEntity:
    """The entity's name, and its signature: under mail sent in its (or the company's) name to
    its candidates, unless the sender is an employee with their own. The HTML is made safe."""
    entity = get_owned(session, LegalEntity, legal_entity_id, user.company_id, "legal entity")
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes:
        if body.name is None:
            raise HTTPException(422, "name: must not be null")
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
