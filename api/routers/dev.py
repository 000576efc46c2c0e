"""Development only: what the dev outbox captured, each company seeing only its own mail."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import select

from api.deps import CurrentUser, SessionDep, SettingsDep
from core.db import get_or_fail
from core.models import Company, Connection
from core.outbox import read_outbox

router = APIRouter(prefix="/dev", tags=["development"])


@router.get("/outbox")
def dev_outbox(
    user: CurrentUser, session: SessionDep, settings: SettingsDep, limit: int = 100
) -> list[dict[str, Any]]:
    """What the dev outbox captured from the caller's company, newest first. Only mounted in
    development."""
    company = get_or_fail(session, Company, user.company_id)
    custom = session.exec(
        select(Connection.custom_address).where(Connection.company_id == company.id)
    ).all()
    senders = [settings.hosted_address(company.slug), *custom]
    return read_outbox(settings.outbox_dir, senders, limit=max(1, min(limit, 1000)))
