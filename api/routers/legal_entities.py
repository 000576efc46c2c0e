from __future__ import annotations

from fastapi import APIRouter, status
from sqlmodel import col, select

from api.deps import CurrentUser, SessionDep, SettingsAdmin
from api.schemas import LegalEntityCreate, LegalEntityPublic
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
