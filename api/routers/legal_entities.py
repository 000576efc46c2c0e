"""Legal entities: create, list and change (api/services/legal_entities.py)."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import CurrentUser, SessionDep, SettingsAdmin
from api.schemas import LegalEntityCreate, LegalEntityPublic, LegalEntityUpdate
from api.services import legal_entities as service
from core.models import LegalEntity

router = APIRouter(prefix="/v1/legal-entities", tags=["legal entities"])


@router.post("", response_model=LegalEntityPublic, status_code=status.HTTP_201_CREATED)
def create_legal_entity(
    body: LegalEntityCreate, user: SettingsAdmin, session: SessionDep
) -> LegalEntity:
    return service.create(session, user, body)


@router.get("", response_model=list[LegalEntityPublic])
def list_legal_entities(user: CurrentUser, session: SessionDep) -> list[LegalEntity]:
    return service.all_of(session, user)


@router.patch("/{legal_entity_id}", response_model=LegalEntityPublic)
def update_legal_entity(
    legal_entity_id: str, body: LegalEntityUpdate, user: SettingsAdmin, session: SessionDep
) -> LegalEntity:
    """The entity's name, and its signature: under mail sent in its (or the company's) name to
    its candidates, unless the sender is an employee with their own. The HTML is made safe."""
    return service.update(session, user, legal_entity_id, body)
