"""Sending one message to a candidate (POST, 202), and taking a scheduled one back or changing
it before its time. The rules are api/services/send.py's; the run is send-message-{id}."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from temporalio.client import Client

from api.deps import (
    EngineDep,
    Recruiter,
    SessionDep,
    SettingsDep,
    TemporalDep,
    temporal_client,
)
from api.routers.common import insert_then_start
from api.runs import start_send
from api.schemas import (
    MessagePublic,
    MessageUpdate,
    SendMessageRequest,
)
from api.services import messages
from api.services import send as service
from contracts.send import RESCHEDULED
from core.models import Message

log = logging.getLogger(__name__)
router = APIRouter(tags=["messages"])


@router.post(
    "/v1/candidates/{candidate_id}/messages",
    response_model=MessagePublic,
    status_code=status.HTTP_202_ACCEPTED,
)
async def send_message(
    candidate_id: str,
    body: SendMessageRequest,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
    engine: EngineDep,
    request: Request,
) -> MessagePublic:
    """Queue a message to the candidate. Its status moves queued → sending → sent (or failed);
    with `send_at` (or the company's undo window) it is `scheduled` first, and
    POST /v1/messages/{id}/cancel takes it back until then. From a template (`template_id`),
    a field without a fallback that is empty refuses the send (422 naming it)."""
    candidate = await run_in_threadpool(messages.owned_candidate, session, user, candidate_id)

    async def start(queued: Message) -> bool:
        # The workflow service is reached only for a message that passed every check.
        return await start_send(await temporal_client(request), settings, queued)

    message = await insert_then_start(
        lambda: service.queue(session, settings, user, candidate, body),
        start,
        lambda queued: service.delete_message(engine, queued.id),
        "The message was not queued",
    )
    return messages.public(message, [], settings.public_url, remote_images=False)


async def _wake(temporal: Client, message: Message) -> None:
    """Tell the message's run to look again (a cancel or a new time); the database decides,
    so a signal that does not arrive only delays the run's look until the old time."""
    try:
        await temporal.get_workflow_handle(message.run_id).signal(RESCHEDULED)
    except Exception:
        log.warning("could not wake the run of message %s", message.id, exc_info=True)


@router.post("/v1/messages/{message_id}/cancel", response_model=MessagePublic)
async def cancel_message(
    message_id: str,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> MessagePublic:
    """Cancel a `scheduled` message (send later, or within the undo window): it becomes
    `cancelled` and is never sent. 409 "already sent" once its time came."""
    message = await run_in_threadpool(messages.owned_message, session, user, message_id)
    await run_in_threadpool(service.cancel_scheduled, session, user, message)
    await _wake(temporal, message)
    return messages.public(message, [], settings.public_url, remote_images=False)


@router.patch("/v1/messages/{message_id}", response_model=MessagePublic)
async def edit_message(
    message_id: str,
    body: MessageUpdate,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> MessagePublic:
    """Change a `scheduled` message's subject, text, HTML or send_at. 409 "already sent" once
    its time came."""
    message = await run_in_threadpool(messages.owned_message, session, user, message_id)
    moved = await run_in_threadpool(service.edit_scheduled, session, settings, user, message, body)
    if moved:
        await _wake(temporal, message)
    return messages.public(message, [], settings.public_url, remote_images=False)
