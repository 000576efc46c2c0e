"""The event feed (`GET /v1/events`) and redelivery: what happened, for the platform to pull."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from api.deps import SessionDep, SettingsAdmin, SettingsDep, TemporalDep
from api.routers.common import get_owned
from api.schemas import EventFeed, EventPublic
from api.services import webhooks as service
from core import events
from core.db import session_scope
from core.events import CATALOGUE
from core.models import Event, User
from workflows.client import wake_endpoint

router = APIRouter(tags=["events"])


def _cursor(value: str | None) -> int:
    if value is None or value == "":
        return 0
    if not value.isdigit() or len(value) > 18:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "after: give the `next` value of an earlier answer (or nothing, to start at the "
            "oldest kept event)",
        )
    return int(value)


def _read(
    session: Session, user: User, after: int, limit: int, types: list[str] | None
) -> EventFeed:
    # Number what has committed so far, so the answer is as fresh as the database.
    with session_scope(session.get_bind()) as writer:  # type: ignore[arg-type]
        events.sequence(writer)
    found, cursor = events.feed(session, user.company_id, after=after, limit=limit, types=types)
    return EventFeed(
        data=[EventPublic.model_validate(events.public(e, personal=False)) for e in found],
        next=str(cursor),
    )


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
    wanted = [t.strip() for t in types.split(",") if t.strip()] if types else None
    unknown = [t for t in wanted or [] if t not in CATALOGUE]
    if unknown:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"types: unknown {', '.join(unknown)}; known: {', '.join(sorted(CATALOGUE))}",
        )
    return _read(session, user, _cursor(after), limit, wanted)


@router.post("/v1/events/{event_id}/redeliver", status_code=status.HTTP_202_ACCEPTED)
async def redeliver_event(
    event_id: str,
    user: SettingsAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, list[str]]:
    """Send the event again to every enabled endpoint that subscribes to it."""
    event = await run_in_threadpool(get_owned, session, Event, event_id, user.company_id, "event")
    woken = await run_in_threadpool(service.redeliver, session, user, event)
    for endpoint_id in woken:
        await wake_endpoint(temporal, settings, endpoint_id, user.company_id)
    return {"endpoints": [str(e) for e in woken]}
