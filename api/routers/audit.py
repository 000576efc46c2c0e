"""The audit trail: who changed which setting or connection, when, before and after."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlmodel import col, select

from api.deps import SessionDep, SettingsAdmin
from core.models import AuditEvent, User

router = APIRouter(tags=["audit"])


class AuditEventPublic(BaseModel):
    id: uuid.UUID
    action: str
    target: str
    detail: dict
    user_id: uuid.UUID | None
    user_name: str | None
    created_at: datetime


@router.get("/v1/audit", response_model=list[AuditEventPublic])
def list_audit(
    user: SettingsAdmin,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: datetime | None = None,
    target: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> list[AuditEventPublic]:
    """The company's audit events, newest first; page with `before`, filter by `target`
    (for example `connection:<id>`) or `action` (for example `connection.activate`)."""
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
