"""The event feed (`GET /v1/events`) and redelivery: what happened, for the platform to pull."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.concurrency import run_in_threadpool

from api.deps import SessionDep, SettingsAdmin, SettingsDep, TemporalDep
from api.runs import wake_endpoint
from api.schemas import EventFeed
from api.services import webhooks as service

router = APIRouter(tags=["events"])


@router.get("/v1/events", response_model=EventFeed)
def list_events(
    user: SettingsAdmin,
    session: SessionDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    types: str | None = None,
) -> EventFeed:
    """The company's events in commit order. Keep `next` and give it as `after`: no event is
    missed or repeated, whoever wrote them. `types` is a comma-separated list."""
    return service.feed(session, user, after, limit, types)


@router.post("/v1/events/{event_id}/redeliver", status_code=status.HTTP_202_ACCEPTED)
async def redeliver_event(
    event_id: str,
    user: SettingsAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, list[str]]:
    """Send the event again to every enabled endpoint that subscribes to it."""
    woken = await run_in_threadpool(service.redeliver, session, user, event_id)
    for endpoint_id in woken:
        await wake_endpoint(temporal, settings, endpoint_id, user.company_id)
    return {"endpoints": [str(e) for e in woken]}
