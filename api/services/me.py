"""The signed-in user's own settings: the reply-notification switch, the title templates show
as {{ sender.title }}, and the signature under mail sent in their name."""

from __future__ import annotations

from sqlmodel import Session

from api.schemas import MeUpdate
from api.services.templates import set_signature
from core.models import User


def update(session: Session, user: User, body: MeUpdate) -> User:
    changes = body.model_dump(exclude_unset=True)
    if body.notify_replies is not None:
        user.notify_replies = body.notify_replies
    if "title" in changes:
        user.title = (body.title or "").strip() or None
    set_signature(user, changes)
    if changes:
        session.add(user)
        session.commit()
    return user
