"""Composing as the API does it: stored templates (POST/GET/PATCH/DELETE /v1/templates and the
preview), and a message's words for a single send or a bulk send's recipients, from a template
or as written, with the merge fields and the signature (core/templates/)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from api.schemas import InvitationRequest, TemplateCreate, TemplatePublic, TemplateUpdate
from api.services.common import check_entity, get_owned
from core import audit
from core.db import get_or_fail
from core.errors import Conflict, Refused
from core.models import (
    Candidate,
    Company,
    LegalEntity,
    MessageTemplate,
    SenderNameMode,
    User,
    utcnow,
)
from core.settings import Settings
from core.templates import Draft, draft, grammar, invitations
from core.templates.fields import values_for
from core.templates.signatures import Signature, choose, clean_html

MAX_DATA_CHARS = 20_000
# Inline default attachments per template: within the request limit once base64-encoded.
MAX_TEMPLATE_ATTACHMENT_BYTES = 3 * 1024 * 1024


def _unprocessable(message: str) -> Refused:
    return Refused(message)


# -- templates ----------------------------------------------------------------------------


def _checked_variants(variants: list[Any]) -> list[dict[str, Any]]:
    rows = [v.model_dump() for v in variants]
    seen: set[str] = set()
    for index, row in enumerate(rows):
        language = row["language"].lower()
        if language in seen:
            raise _unprocessable(f"variants[{index}].language: {row['language']} is given twice")
        seen.add(language)
        for part in ("subject", "text", "html"):
            if row.get(part) is None:
                continue
            try:
                grammar.check(f"variants[{index}].{part}", row[part])
            except grammar.TemplateError as exc:
                raise _unprocessable(str(exc)) from None
    return rows


def checked_attachments(items: list[Any] | None) -> list[dict[str, Any]] | None:
    """Each default attachment decoded once, checked, and kept with its size and digest."""
    if not items:
        return None
    kept, total = [], 0
    for index, item in enumerate(items):
        try:
            content = base64.b64decode(item.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise _unprocessable(
                f"attachments[{index}].content_base64: not base64 (RFC 4648, no line breaks)"
            ) from None
        name = item.filename.strip()
        if not name or any(c in name for c in "/\\\r\n\0") or not name.isprintable():
            raise _unprocessable(
                f"attachments[{index}].filename: a file name without slashes or control characters"
            )
        total += len(content)
        if total > MAX_TEMPLATE_ATTACHMENT_BYTES:
            raise _unprocessable(
                f"attachments: at most {MAX_TEMPLATE_ATTACHMENT_BYTES // (1024 * 1024)} MiB in all "
                "per template"
            )
        kept.append(
            {
                "filename": name,
                "content_type": item.content_type.lower(),
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
                "content_b64": base64.b64encode(content).decode("ascii"),
            }
        )
    return kept


def attachments_of(template: MessageTemplate | None) -> list[dict[str, Any]]:
    return list(template.attachments or []) if template is not None else []


def public(template: MessageTemplate) -> TemplatePublic:
    fields: dict[str, None] = {}
    for variant in template.variants:
        for part in ("subject", "text", "html"):
            if variant.get(part):
                fields.update(dict.fromkeys(grammar.check(part, variant[part])))
    return TemplatePublic.model_validate(
        {
            **template.model_dump(exclude={"attachments"}),
            "attachments": [
                {k: v for k, v in a.items() if k != "content_b64"}
                for a in template.attachments or []
            ],
            "fields": list(fields),
        }
    )


def create_template(session: Session, user: User, body: TemplateCreate) -> MessageTemplate:
    check_entity(session, user.company_id, body.legal_entity_id)
    template = MessageTemplate(
        company_id=user.company_id,
        legal_entity_id=body.legal_entity_id,
        name=body.name.strip(),
        type=body.type,
        variants=_checked_variants(body.variants),
        sender=body.sender,
        attachments=checked_attachments(body.attachments),
        created_by_user_id=user.id,
    )
    _refuse_same_name(session, template)
    session.add(template)
    audit.record(
        session,
        company_id=user.company_id,
        user_id=user.id,
        action="template.create",
        target=f"template:{template.id}",
        name=template.name,
    )
    session.commit()
    return template


def _refuse_same_name(session: Session, template: MessageTemplate) -> None:
    clash = session.exec(
        select(MessageTemplate.id).where(
            MessageTemplate.company_id == template.company_id,
            MessageTemplate.name == template.name,
            MessageTemplate.legal_entity_id == template.legal_entity_id
            if template.legal_entity_id is not None
            else col(MessageTemplate.legal_entity_id).is_(None),
            MessageTemplate.id != template.id,
        )
    ).first()
    if clash is not None:
        raise Conflict(
            f"name: a template named {template.name!r} exists already ({clash}); "
            "PATCH it, or choose another name",
        )


def update_template(
    session: Session, user: User, template: MessageTemplate, body: TemplateUpdate
) -> MessageTemplate:
    changes = body.model_dump(exclude_unset=True)
    for name in ("name", "type", "variants"):
        if name in changes and changes[name] is None:
            raise _unprocessable(f"{name}: must not be null")
    if "legal_entity_id" in changes:
        check_entity(session, user.company_id, body.legal_entity_id)
        template.legal_entity_id = body.legal_entity_id
    if body.variants is not None:
        template.variants = _checked_variants(body.variants)
    if body.name is not None:
        template.name = body.name.strip()
    if body.type is not None:
        template.type = body.type
    if "sender" in changes:
        template.sender = body.sender
    if "attachments" in changes:
        template.attachments = checked_attachments(body.attachments)
    _refuse_same_name(session, template)
    template.updated_at = utcnow()
    session.add(template)
    audit.record(
        session,
        company_id=user.company_id,
        user_id=user.id,
        action="template.update",
        target=f"template:{template.id}",
        fields=sorted(changes),
    )
    session.commit()
    return template


def delete_template(session: Session, user: User, template: MessageTemplate) -> None:
    """Messages written from it keep what was rendered (and its id)."""
    session.delete(template)
    audit.record(
        session,
        company_id=user.company_id,
        user_id=user.id,
        action="template.delete",
        target=f"template:{template.id}",
        name=template.name,
    )
    session.commit()


def list_templates(
    session: Session, company_id: uuid.UUID, legal_entity_id: uuid.UUID | None
) -> list[MessageTemplate]:
    query = select(MessageTemplate).where(MessageTemplate.company_id == company_id)
    if legal_entity_id is not None:  # the entity's own, and the company-wide ones
        query = query.where(
            or_(
                col(MessageTemplate.legal_entity_id) == legal_entity_id,
                col(MessageTemplate.legal_entity_id).is_(None),
            )
        )
    return list(session.exec(query.order_by(col(MessageTemplate.name), col(MessageTemplate.id))))


# -- a message's words ---------------------------------------------------------------------


def check_data(data: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """`data`: nested objects of texts and numbers, bounded."""
    if not data:
        return {}

    def walk(value: Any, where: str, depth: int) -> None:
        if depth > 4:
            raise _unprocessable(f"data{where}: nested too deep (at most 4 levels)")
        if isinstance(value, dict):
            for key, item in value.items():
                if not str(key).isidentifier() or str(key).startswith("_"):
                    raise _unprocessable(
                        f"data{where}: {key!r} is not a field name (letters, digits, _; "
                        "not starting with _)"
                    )
                walk(item, f"{where}.{key}", depth + 1)
        elif not isinstance(value, str | int | float | bool) and value is not None:
            raise _unprocessable(f"data{where}: a field holds text or a number")

    walk(dict(data), "", 0)
    if len(repr(data)) > MAX_DATA_CHARS:
        raise _unprocessable(f"data: at most {MAX_DATA_CHARS} characters")
    return data


class OtherEntity(ValueError):
    """A template of one legal entity, for a candidate of another (or of none)."""


@dataclass
class Writer:
    """What stays the same for every recipient of one send: the company, the sender, the
    template, the signatures by legal entity (loaded once for a bulk send)."""

    session: Session
    company: Company
    user: User
    template: MessageTemplate | None
    data: Mapping[str, Any]
    with_signature: bool
    _entity_signatures: dict[uuid.UUID, Signature | None]

    @classmethod
    def load(
        cls,
        session: Session,
        user: User,
        template_id: uuid.UUID | None,
        data: Mapping[str, Any] | None,
        with_signature: bool,
    ) -> Writer:
        company = get_or_fail(session, Company, user.company_id)
        template = None
        if template_id is not None:
            template = session.get(MessageTemplate, template_id)
            if template is None or template.company_id != user.company_id:
                raise _unprocessable("template_id: no such template in your company")
        return cls(session, company, user, template, check_data(data), with_signature, {})

    @property
    def sender_mode(self) -> str:
        if self.template is not None and self.template.sender:
            return self.template.sender
        return self.company.sender_name_mode

    @property
    def sender_name(self) -> str:
        return self.user.name if self.sender_mode == SenderNameMode.EMPLOYEE else self.company.name

    def signature(self, entity_id: uuid.UUID | None) -> Signature | None:
        if not self.with_signature:
            return None
        if entity_id is not None and entity_id not in self._entity_signatures:
            entity = self.session.get(LegalEntity, entity_id)
            self._entity_signatures[entity_id] = (
                Signature(entity.signature_text, entity.signature_html) if entity else None
            )
        return choose(
            employee_mode=self.sender_mode == SenderNameMode.EMPLOYEE,
            user=Signature(self.user.signature_text, self.user.signature_html),
            entity=self._entity_signatures.get(entity_id) if entity_id else None,
            company=Signature(self.company.signature_text, self.company.signature_html),
        )

    def values(self, candidate: Candidate, interview: Mapping[str, Any] | None = None) -> dict:
        return values_for(
            candidate_name=candidate.name,
            company_name=self.company.name,
            sender_name=self.sender_name,
            sender_title=self.user.title,
            language=candidate.language,
            timezone=candidate.timezone,
            interview=interview,
            data=self.data,
        )

    def words(
        self,
        candidate: Candidate,
        *,
        subject: str | None,
        text: str | None,
        html: str | None,
        literal: bool,
        interview: Mapping[str, Any] | None = None,
        language: str | None = None,
    ) -> Draft:
        """The words for `candidate`; grammar.MissingFields when a field is empty,
        OtherEntity when the template is another legal entity's."""
        if (
            self.template is not None
            and self.template.legal_entity_id is not None
            and self.template.legal_entity_id != candidate.legal_entity_id
        ):
            raise OtherEntity(
                f"template_id: the template {self.template.name!r} is for another legal entity "
                "than this candidate's; use one of the candidate's entity or a company-wide one"
            )
        return draft(
            values=self.values(candidate, interview),
            variants=self.template.variants if self.template is not None else None,
            language=language or candidate.language,
            default_language=self.company.default_language,
            subject=subject,
            text=text,
            html=html,
            literal=literal,
            signature=self.signature(candidate.legal_entity_id),
        )


def refuse_missing(err: grammar.MissingFields) -> Refused:
    return _unprocessable(f"template: {err}")


def get_template(session: Session, user: User, template_id: str) -> MessageTemplate:
    return get_owned(session, MessageTemplate, template_id, user.company_id, "template")


def set_signature(owner: Any, changes: dict[str, Any]) -> bool:
    """A user's, legal entity's or company's signature from a PATCH's changes: the text (an
    empty one removes it) and the HTML made safe. True when either was given."""
    if "signature_text" not in changes and "signature_html" not in changes:
        return False
    text = changes.get("signature_text", owner.signature_text)
    owner.signature_text = text if text and text.strip() else None
    owner.signature_html = clean_html(changes.get("signature_html", owner.signature_html))
    return True


# -- interview invitations -------------------------------------------------------------


def plan_invitation(
    session: Session,
    settings: Settings,
    company_id: uuid.UUID,
    candidate: Candidate,
    message_id: uuid.UUID,
    request: InvitationRequest,
) -> dict[str, Any]:
    try:
        return invitations.plan(
            session,
            company_id=company_id,
            candidate_id=candidate.id,
            message_id=message_id,
            domain=settings.platform_mail_domain,
            **request.model_dump(),
        )
    except ValueError as exc:
        raise Refused(str(exc)) from None
