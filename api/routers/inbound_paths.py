"""A custom address's ways in (GET/PUT /v1/connections/{id}/inbound): redirect, mailbox sync
and the hosted Reply-To, each with its state (api/services/inbound_paths.py)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import SessionDep, SettingsAdmin, SettingsDep
from api.routers.common import SetupDep
from api.runs import stop_mailbox_sync
from api.schemas import InboundPathsUpdate, InboundPublic
from api.services import connections
from api.services import inbound_paths as service

router = APIRouter(prefix="/v1/connections", tags=["connections"])


@router.get("/{connection_id}/inbound", response_model=InboundPublic)
def read_inbound(
    connection_id: str, user: SettingsAdmin, session: SessionDep, settings: SettingsDep
) -> InboundPublic:
    """How candidates' replies to this address reach Recruitmail: each path's state (`active`,
    `checking`, `waiting_for_consent`, `failing` with the reason and what to do), and for
    mailbox sync the last successful read and its lag."""
    return service.read(session, settings, user, connection_id)


@router.put("/{connection_id}/inbound", response_model=InboundPublic)
async def update_inbound(body: InboundPathsUpdate, setup: SetupDep) -> InboundPublic:
    """Choose the paths: `redirect` (the company's mail system redirects the address; the
    default), `mailbox_sync` (Recruitmail reads the connected mailbox; Microsoft and Google
    only: 409 for SMTP), `hosted_reply_to` (mail from the address asks for replies at a
    per-conversation address on the hosted domain; works on every tenant). `import`: `replies`
    (default) or `all` (a mailbox kept for recruiting alone). Adding mailbox_sync to a signed-in
    mailbox asks for the read permission alone (`authorization_url`); sending goes on."""
    connection = setup.connection
    change = await run_in_threadpool(service.update, setup.session, setup.user, connection, body)
    if change.stop_sync:
        await stop_mailbox_sync(setup.temporal, str(connection.id))
    if change.needs_consent or change.restart_sign_in:
        await connections.ask_permission(setup, reconnect=change.needs_consent)
    await connections.sync_if_needed(setup)
    return await run_in_threadpool(service.answer, setup.session, setup.settings, setup.connection)
