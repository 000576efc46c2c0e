from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, SettingsDep
from core.outbox import read_outbox

router = APIRouter(prefix="/dev", tags=["development"])


@router.get("/outbox")
def dev_outbox(user: CurrentUser, settings: SettingsDep, limit: int = 100) -> list[dict]:
    """What the dev outbox captured, newest first. Only mounted in development."""
    return read_outbox(settings.outbox_dir, limit=max(1, min(limit, 1000)))
