"""Stored templates (docs/templates.md): POST/GET/PATCH/DELETE /v1/templates and
POST /v1/templates/{id}/preview. Recruiters use and preview them; settings admins write them."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Query, Response, status

from api.deps import Recruiter, SessionDep, SettingsAdmin
from api.routers.common import check_entity, get_owned
from api.schemas import (
    TemplateCreate,
    TemplatePreview,
    TemplatePreviewRequest,
    TemplatePublic,
    TemplateUpdate,
)
from api.services import templates as service
from core.models import Candidate
from core.templates import grammar, signatures
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
    values = writer.values(candidate)
    variant = choose_variant(template.variants, language, writer.company.default_language)
    # Each part rendered with its own gaps marked, so the author sees where they are (a
    # field with a fallback in one part and none in another is a gap in that other part).
    parts: dict[str, str | None] = {}
    gaps: dict[str, None] = {}
    for part in ("subject", "text", "html"):
        source = variant.get(part)
        if source is None:
            parts[part] = None
            continue
        missing = grammar.missing([(part, source)], values)
        gaps.update(dict.fromkeys(missing))
        rendered = grammar.render(
            source if part == "subject" else None,
            source if part == "text" else None,
            source if part == "html" else None,
            _marked(values, missing),
        )
        parts[part] = getattr(rendered, part)
    text, html = signatures.append(
        parts["text"] or "", parts["html"], writer.signature(candidate.legal_entity_id)
    )
    return TemplatePreview(
        language=str(variant["language"]),
        subject=parts["subject"] or "",
        text=text,
        html=html,
        missing=list(gaps),
    )


def _marked(values: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """`values` with each of `paths` standing as "{{ path }}"."""
    marked = {**values}
    for path in paths:
        node = marked
        head, _, last = path.rpartition(".")
        for part in head.split("."):
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[last] = "{{ " + path + " }}"
    return marked
