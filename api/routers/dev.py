"""Development only: what the dev outbox captured, each company seeing only its own mail."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import CurrentUser, SettingsDep
from core.outbox import read_outbox

router = APIRouter(prefix="/dev", tags=["development"])


@router.get("/outbox")
def dev_outbox(user: CurrentUser, settings: SettingsDep, limit: int = 100) -> list[dict[str, Any]]:
    """What the dev outbox captured for the caller's company, newest first: filed by the
    company's id when it was sent, never matched by an address. Only mounted in development."""
    return read_outbox(settings.outbox_dir, user.company_id, limit=max(1, min(limit, 1000)))
