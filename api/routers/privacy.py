"""A company's privacy rules (GET/PUT /v1/privacy), and each user's own notification switch
(GET/PATCH /v1/me)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, SessionDep, SettingsAdmin
from api.schemas import MePublic, MeUpdate, PrivacyPublic, PrivacyUpdate
from api.services import me
from api.services import privacy as service

router = APIRouter(tags=["privacy"])


@router.get("/v1/privacy", response_model=PrivacyPublic)
def read_privacy(user: SettingsAdmin, session: SessionDep) -> PrivacyPublic:
    return PrivacyPublic.model_validate(service.rules(session, user), from_attributes=True)


@router.put("/v1/privacy", response_model=PrivacyPublic)
def update_privacy(body: PrivacyUpdate, user: SettingsAdmin, session: SessionDep) -> PrivacyPublic:
    """`notification_names_candidate`: whether reply-notification emails name the candidate
    and show the subject (off by default: they say "a candidate"). The retention rules apply
    to existing data at the next daily sweep (docs/privacy.md)."""
    privacy = service.update_rules(session, user, body)
    return PrivacyPublic.model_validate(privacy, from_attributes=True)


@router.get("/v1/me", response_model=MePublic)
def read_me(user: CurrentUser) -> MePublic:
    return MePublic.model_validate(user, from_attributes=True)


@router.patch("/v1/me", response_model=MePublic)
def update_me(body: MeUpdate, user: CurrentUser, session: SessionDep) -> MePublic:
    """`notify_replies: false` turns off the emails about candidates' replies for you.
    `title` is {{ sender.title }} in templates; `signature_text` and `signature_html` go
    under mail sent in your name (the HTML made safe; an empty text removes it)."""
    return MePublic.model_validate(me.update(session, user, body), from_attributes=True)
