"""Mail settings as the API shows and changes them: per scope (the company, each legal entity)
its connections, its custom address and the sender mail really leaves from; the sender's name,
the undo window and the default signature. Each change commits with its audit line."""

from __future__ import annotations

from sqlmodel import Session, col, select

from api.schemas import (
    ConnectionSummary,
    EffectiveSenderPublic,
    MailSettingsPublic,
    MailSettingsUpdate,
    ScopePublic,
    UsePlatformRequest,
)
from api.services.connections import disable_connection, redirect_check, warnings
from api.services.send import undo_seconds
from api.services.templates import set_signature
from core import audit
from core.db import get_or_fail
from core.errors import Refused
from core.models import Company, Connection, LegalEntity, User
from core.send.senders import effective_sender, live_connection
from core.settings import Settings
from core.statuses import LIVE_STATUSES, SETUP_STATUSES


def _view(session: Session, settings: Settings, company: Company) -> MailSettingsPublic:
    entities = session.exec(
        select(LegalEntity)
        .where(LegalEntity.company_id == company.id)
        .order_by(col(LegalEntity.created_at), col(LegalEntity.id))
    ).all()
    current = session.exec(
        select(Connection)
        .where(
            Connection.company_id == company.id,
            col(Connection.status).in_([*LIVE_STATUSES, *SETUP_STATUSES]),
        )
        .order_by(col(Connection.created_at).desc())
    ).all()
    scopes = []
    hosted = settings.hosted_address(company.slug)
    for entity_id, name in [(None, company.name)] + [(e.id, e.name) for e in entities]:
        sender = effective_sender(session, settings, company, entity_id)
        mine = [c for c in current if c.legal_entity_id == entity_id]
        live = [c for c in mine if c.status in LIVE_STATUSES]
        # The scope's own custom address: the live connection's, else the newest setup's.
        custom = next(iter(live or mine), None)
        scopes.append(
            ScopePublic(
                legal_entity_id=entity_id,
                name=name,
                custom_address=custom.custom_address if custom else None,
                connections=[
                    ConnectionSummary(
                        id=c.id, kind=c.kind, custom_address=c.custom_address, status=c.status
                    )
                    for c in mine
                ],
                effective_sender=EffectiveSenderPublic(
                    address=sender.address, transport=sender.transport, source=sender.source
                ),
                redirect_check=redirect_check(custom) if custom else None,
                warnings=warnings(custom, hosted) if custom else [],
            )
        )
    return MailSettingsPublic(
        hosted_address=settings.hosted_address(company.slug),
        sender_name_mode=company.sender_name_mode,
        default_language=company.default_language,
        undo_seconds=undo_seconds(settings, company),
        signature_text=company.signature_text,
        signature_html=company.signature_html,
        scopes=scopes,
    )


def view(session: Session, settings: Settings, user: User) -> MailSettingsPublic:
    return _view(session, settings, get_or_fail(session, Company, user.company_id))


def update(
    session: Session, settings: Settings, user: User, body: MailSettingsUpdate
) -> MailSettingsPublic:
    company = get_or_fail(session, Company, user.company_id)
    changes = body.model_dump(exclude_unset=True)
    before = {name: getattr(company, name) for name in changes}
    if changes.get("sender_name_mode") is not None:
        company.sender_name_mode = changes["sender_name_mode"]
    for name in ("default_language", "undo_seconds"):
        if name in changes:
            setattr(company, name, changes[name])
    set_signature(company, changes)
    session.add(company)
    audit.record(
        session,
        company_id=company.id,
        user_id=user.id,
        action="mail_settings.update",
        target=f"company:{company.id}",
        **{
            name: {"before": before[name], "after": getattr(company, name)}
            for name in changes
            if not name.startswith("signature")
        },
        signature_changed="signature_text" in changes or "signature_html" in changes,
    )
    session.commit()
    return _view(session, settings, company)


def use_platform(
    session: Session, settings: Settings, user: User, body: UsePlatformRequest
) -> MailSettingsPublic:
    company = get_or_fail(session, Company, user.company_id)
    if body.legal_entity_id is not None:
        entity = session.get(LegalEntity, body.legal_entity_id)
        if entity is None or entity.company_id != company.id:
            raise Refused("legal_entity_id: no such legal entity in your company")
    connection = live_connection(session, company.id, body.legal_entity_id)
    if connection is not None:
        disable_connection(
            session,
            connection,
            user,
            "mail_settings.use_platform",
            legal_entity_id=str(body.legal_entity_id or ""),
        )
    return _view(session, settings, company)
