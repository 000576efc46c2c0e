from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import select

from recruitmail.api.deps import SessionDep, SettingsAdmin, SettingsDep
from recruitmail.api.schemas import (
    EffectiveSenderPublic,
    MailSettingsPublic,
    MailSettingsUpdate,
    ScopePublic,
)
from recruitmail.core.models import AuditEvent, Company, LegalEntity
from recruitmail.core.senders import effective_sender

router = APIRouter(prefix="/v1/mail-settings", tags=["mail settings"])


def _view(session, settings, company: Company) -> MailSettingsPublic:
    entities = session.exec(
        select(LegalEntity)
        .where(LegalEntity.company_id == company.id)
        .order_by(LegalEntity.created_at, LegalEntity.id)
    ).all()
    scopes = []
    for entity_id, name in [(None, company.name)] + [(e.id, e.name) for e in entities]:
        sender = effective_sender(session, settings, company, entity_id)
        scopes.append(
            ScopePublic(
                legal_entity_id=entity_id,
                name=name,
                custom_address=None,
                effective_sender=EffectiveSenderPublic(
                    address=sender.address, transport=sender.transport, source=sender.source
                ),
            )
        )
    return MailSettingsPublic(
        hosted_address=settings.hosted_address(company.slug),
        sender_name_mode=company.sender_name_mode,
        scopes=scopes,
    )


@router.get("", response_model=MailSettingsPublic)
def read_mail_settings(
    user: SettingsAdmin, session: SessionDep, settings: SettingsDep
) -> MailSettingsPublic:
    return _view(session, settings, session.get(Company, user.company_id))


@router.patch("", response_model=MailSettingsPublic)
def update_mail_settings(
    body: MailSettingsUpdate, user: SettingsAdmin, session: SessionDep, settings: SettingsDep
) -> MailSettingsPublic:
    company = session.get(Company, user.company_id)
    before = company.sender_name_mode
    company.sender_name_mode = body.sender_name_mode
    session.add(company)
    session.add(
        AuditEvent(
            company_id=company.id,
            user_id=user.id,
            action="mail_settings.update",
            target=f"company:{company.id}",
            detail={"sender_name_mode": {"before": before, "after": body.sender_name_mode}},
        )
    )
    session.commit()
    return _view(session, settings, company)
