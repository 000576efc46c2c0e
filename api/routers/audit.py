"""The audit trail: who changed which setting or connection, when, before and after."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import SessionDep, SettingsAdmin
from api.schemas import AuditEventPublic
from api.services import audit as service

router = APIRouter(tags=["audit"])


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
    return service.newest(session, user, limit, before, target, action)
