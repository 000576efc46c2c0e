"""The audit trail as the API lists it: who changed which setting or connection, when, before
and after; the company's own events only."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from api.schemas import AuditEventPublic
from core.models import AuditEvent, User


def newest(
    session: Session,
    user: User,
    limit: int,
    before: datetime | None,
    target: str | None,
    action: str | None,
) -> list[AuditEventPublic]:
    query = (
        select(AuditEvent, User.name)
        .join(User, col(AuditEvent.user_id) == col(User.id), isouter=True)
        .where(AuditEvent.company_id == user.company_id)
    )
    if before is not None:
        query = query.where(col(AuditEvent.created_at) < before)
    if target:
        query = query.where(AuditEvent.target == target)
    if action:
        query = query.where(AuditEvent.action == action)
    rows = session.exec(
        query.order_by(col(AuditEvent.created_at).desc(), col(AuditEvent.id)).limit(limit)
    ).all()
    return [
        AuditEventPublic(
            id=event.id,
            action=event.action,
            target=event.target,
            detail=event.detail,
            user_id=event.user_id,
            user_name=name,
            created_at=event.created_at,
        )
        for event, name in rows
    ]
