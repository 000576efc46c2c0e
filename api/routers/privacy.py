"""A company's privacy rules (GET/PUT /v1/privacy), and each user's own notification switch
(GET/PATCH /v1/me)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException
from sqlmodel import Session

from api.deps import CurrentUser, SessionDep, SettingsAdmin
from api.schemas import MePublic, MeUpdate, PrivacyPublic, PrivacyUpdate
from api.services.templates import set_signature
from core import audit
from core.models import CompanyPrivacy, utcnow

router = APIRouter(tags=["privacy"])


def _privacy(session: Session, company_id: uuid.UUID) -> CompanyPrivacy:
    return session.get(CompanyPrivacy, company_id) or CompanyPrivacy(company_id=company_id)


@router.get("/v1/privacy", response_model=PrivacyPublic)
def read_privacy(user: SettingsAdmin, session: SessionDep) -> PrivacyPublic:
    return PrivacyPublic.model_validate(_privacy(session, user.company_id), from_attributes=True)


@router.put("/v1/privacy", response_model=PrivacyPublic)
def update_privacy(body: PrivacyUpdate, user: SettingsAdmin, session: SessionDep) -> PrivacyPublic:
    """`notification_names_candidate`: whether reply-notification emails name the candidate
    and show the subject (off by default: they say "a candidate"). The retention rules apply
    to existing data at the next daily sweep (docs/privacy.md)."""
    privacy = _privacy(session, user.company_id)
    changes = body.model_dump(exclude_unset=True)
    for name in ("notification_names_candidate", "unassigned_retention_days"):
        if name in changes and changes[name] is None:
            raise HTTPException(422, f"{name}: must not be null")
    erase_after = changes.get("erase_after_days_closed", privacy.erase_after_days_closed)
    ask_before = changes.get("consent_extension_days", privacy.consent_extension_days)
    if ask_before is not None and erase_after is not None and ask_before >= erase_after:
        raise HTTPException(
            422,
            f"consent_extension_days: the candidate is asked that many days before the erasure, "
            f"so it must be less than erase_after_days_closed ({erase_after})",
        )
    for name, value in changes.items():
        setattr(privacy, name, value)
    privacy.updated_at = utcnow()
    session.add(privacy)
    audit.record(
        session,
        company_id=user.company_id,
        user_id=user.id,
        action="privacy.update",
        target=f"company:{user.company_id}",
        **changes,
    )
    session.commit()
    return PrivacyPublic.model_validate(privacy, from_attributes=True)


@router.get("/v1/me", response_model=MePublic)
def read_me(user: CurrentUser) -> MePublic:
    return MePublic.model_validate(user, from_attributes=True)


@router.patch("/v1/me", response_model=MePublic)
def update_me(body: MeUpdate, user: CurrentUser, session: SessionDep) -> MePublic:
    """`notify_replies: false` turns off the emails about candidates' replies for you.
    `title` is {{ sender.title }} in templates; `signature_text` and `signature_html` go
    under mail sent in your name (the HTML made safe; an empty text removes it)."""
    changes = body.model_dump(exclude_unset=True)
    if body.notify_replies is not None:
        user.notify_replies = body.notify_replies
    if "title" in changes:
        user.title = (body.title or "").strip() or None
    set_signature(user, changes)
    if changes:
        session.add(user)
        session.commit()
    return MePublic.model_validate(user, from_attributes=True)
