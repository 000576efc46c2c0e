"""Stored templates (docs/templates.md): POST/GET/PATCH/DELETE /v1/templates and
POST /v1/templates/{id}/preview. Recruiters use and preview them; settings admins write them."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Response, status

from api.deps import Recruiter, SessionDep, SettingsAdmin
from api.schemas import (
    TemplateCreate,
    TemplatePreview,
    TemplatePreviewRequest,
    TemplatePublic,
    TemplateUpdate,
)
from api.services import templates as service
from api.services.common import check_entity, get_owned
from core.models import Candidate
from core.templates import preview
from core.templates.fields import choose_variant

router = APIRouter(prefix="/v1/templates", tags=["templates"])


@router.post("", response_model=TemplatePublic, status_code=status.HTTP_201_CREATED)
def create_template(
    body: TemplateCreate, user: SettingsAdmin, session: SessionDep
) -> TemplatePublic:
    """A template: language variants of subject, text and HTML with merge fields. A field
    outside the grammar is refused with the place named (422)."""
    return service.public(service.create_template(session, user, body))


@router.get("", response_model=list[TemplatePublic])
def list_templates(
    user: Recruiter,
    session: SessionDep,
    legal_entity_id: uuid.UUID | None = Query(
        default=None, description="The entity's own templates and the company-wide ones."
    ),
) -> list[TemplatePublic]:
    check_entity(session, user.company_id, legal_entity_id)
    return [
        service.public(t) for t in service.list_templates(session, user.company_id, legal_entity_id)
    ]


@router.get("/{template_id}", response_model=TemplatePublic)
def read_template(template_id: str, user: Recruiter, session: SessionDep) -> TemplatePublic:
    return service.public(service.get_template(session, user, template_id))


@router.patch("/{template_id}", response_model=TemplatePublic)
def update_template(
    template_id: str, body: TemplateUpdate, user: SettingsAdmin, session: SessionDep
) -> TemplatePublic:
    template = service.get_template(session, user, template_id)
    return service.public(service.update_template(session, user, template, body))


@router.delete("/{template_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_template(template_id: str, user: SettingsAdmin, session: SessionDep) -> Response:
    """Messages already written from it keep what was rendered."""
    service.delete_template(session, user, service.get_template(session, user, template_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{template_id}/preview", response_model=TemplatePreview)
def preview_template(
    template_id: str, body: TemplatePreviewRequest, user: Recruiter, session: SessionDep
) -> TemplatePreview:
    """The subject, text and HTML a candidate would get (or the sample `data` gives), with the
    signature; `missing` lists the fields a send would be refused for."""
    template = service.get_template(session, user, template_id)
    writer = service.Writer.load(session, user, template.id, body.data, True)
    if body.candidate_id is not None:
        candidate = get_owned(session, Candidate, body.candidate_id, user.company_id, "candidate")
    else:
        candidate = Candidate(company_id=user.company_id, name="", email="")
    language = body.language or candidate.language
    variant = choose_variant(template.variants, language, writer.company.default_language)
    shown = preview(variant, writer.values(candidate), writer.signature(candidate.legal_entity_id))
    return TemplatePreview(
        language=str(variant["language"]),
        subject=shown.subject,
        text=shown.text,
        html=shown.html,
        missing=shown.missing,
    )
