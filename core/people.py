"""A company's people, as the platform's own mail addresses them."""

from __future__ import annotations

import uuid

from sqlmodel import Session, select

from core.models import Permission, User


def company_admins(session: Session, company_id: uuid.UUID) -> list[User]:
    """The company's users who manage its mail settings."""
    users = session.exec(select(User).where(User.company_id == company_id)).all()
    return [u for u in users if Permission.RECRUITING_SETTINGS in u.permissions]
