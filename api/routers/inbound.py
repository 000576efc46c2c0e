"""Inbound mail over HTTP: raw RFC 5322, and Mailjet Parse API posts. Same path as SMTP."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import uuid
from email import message_from_bytes
from email.policy import default as default_policy
from email.utils import getaddresses
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from api.deps import SettingsDep
from api.runs import nudge_mailbox_sync, start_all_routing
from api.services import deliverability
from api.services import inbound as inbound_service
from api.services import inbound_paths as inbound_paths_service
from api.services.inbound import mailjet_to_mime
from core.inbound import intake
from core.inbound_paths.push import VALIDATION_TOKEN_RE, PushRefused, verify_gmail_push
from core.jsonsafe import loads_bounded
from core.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(tags=["inbound"])

# Where a raw post without an explicit recipient names the mailbox it was delivered to.
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "To", "Cc")


class InboundAccepted(BaseModel):
    stored: list[uuid.UUID]
    recipients: list[str]


def _check_secret(request: Request, settings: Settings) -> None:
    """Basic auth (any user, the secret as password, as Mailjet sends it) or a Bearer secret."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    given = ""
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            given = ""
    expected = settings.effective_inbound_secret()
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "The inbound secret is missing or wrong: send it as the Basic auth password "
            "or as a Bearer token.",
            headers={"WWW-Authenticate": 'Basic realm="recruitmail-inbound"'},
        )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"The message is larger than {limit} bytes."
        )
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise HTTPException(
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                f"The message is larger than {limit} bytes.",
            )
    if not body.strip():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "The body is empty.")
    return bytes(body)


async def _accept(
    request: Request, settings: Settings, raw: bytes, addresses: list[str], channel: str
) -> InboundAccepted:
    engine = request.app.state.engine
    recipients = await run_in_threadpool(inbound_service.served, engine, settings, addresses)
    if not recipients:
        shown = ", ".join(addresses[:5]) or "none found"
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"No recipient is a mailbox served here (recipients: {shown}).",
        )
    stored = await run_in_threadpool(
        lambda: intake.store_inbound(
            engine, raw=raw, mail_from="", recipients=recipients, channel=channel
        )
    )
    try:
        client = await request.app.state.temporal.client()
        await start_all_routing(
            client,
            stored,
            task_queue=settings.task_queue,
            closed_application_grace=settings.closed_application_grace,
        )
    except Exception:
        # Stored is what matters to the sender; the receiver's sweeper starts routing later.
        log.warning("Temporal unavailable; inbound routing deferred to the sweeper")
    return InboundAccepted(stored=[s.inbound_id for s in stored], recipients=list(recipients))


@router.post("/inbound/raw", status_code=status.HTTP_202_ACCEPTED, response_model=InboundAccepted)
async def inbound_raw(
    request: Request,
    settings: SettingsDep,
    recipient: Annotated[list[str] | None, Query(description="envelope recipients")] = None,
) -> InboundAccepted:
    """One raw RFC 5322 message. Without `recipient`, the delivery headers name the mailbox."""
    _check_secret(request, settings)
    raw = await _read_body(request, settings.inbound_max_message_bytes)
    addresses = list(recipient or []) or _header_recipients(raw)
    return await _accept(request, settings, raw, addresses, "raw")


@router.post("/inbound/mailjet", response_model=InboundAccepted)
async def inbound_mailjet(request: Request, settings: SettingsDep) -> InboundAccepted:
    """A Mailjet Parse API post, rebuilt into MIME. Answers 200, which stops Mailjet retrying."""
    _check_secret(request, settings)
    body = await _read_body(request, settings.max_webhook_bytes)
    try:
        post = loads_bounded(body)
        if not isinstance(post, dict):
            raise ValueError("the body is not a JSON object")
        raw = mailjet_to_mime(post)
    except (ValueError, TypeError, AttributeError) as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"Not a Mailjet Parse API post: {exc}"
        ) from None
    recipient = str(post.get("Recipient") or "")
    addresses = [a for _, a in getaddresses([recipient]) if "@" in a] or _header_recipients(raw)
    return await _accept(request, settings, raw, addresses, "mailjet")


@router.post("/inbound/mailjet/events")
async def inbound_mailjet_events(request: Request, settings: SettingsDep) -> dict[str, int]:
    """Mailjet's event callback (the URL set under Account settings → Event notifications,
    with the inbound secret as its Basic auth password): bounce, blocked and spam events put
    addresses on the sending company's suppression list. Answers 200, which stops Mailjet
    retrying."""
    _check_secret(request, settings)
    body = await _read_body(request, settings.max_webhook_bytes)
    try:
        posted = loads_bounded(body)
    except ValueError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"Not a Mailjet event callback: {exc}"
        ) from None
    taken = await run_in_threadpool(
        deliverability.take, request.app.state.engine, posted, settings.soft_bounce_limit
    )
    return {"taken": taken}


def _header_recipients(raw: bytes) -> list[str]:
    try:
        msg = message_from_bytes(raw, policy=default_policy)
        values = [str(v) for name in _RECIPIENT_HEADERS for v in msg.get_all(name) or []]
    except Exception:
        return []
    return [a for _, a in getaddresses(values) if "@" in a]


# -- mailbox sync's notifications -------------------------------------------------------------

# A notification is small; Graph batches a few in one collection.
NOTIFICATION_BYTES = 256 * 1024
_MAX_NOTIFICATIONS = 100
# Graph's lifecycle events, as the sync run's nudges (contracts/inbound_paths.py).
_LIFECYCLE = {
    "reauthorizationRequired": "reauthorize",
    "subscriptionRemoved": "removed",
    "missed": "missed",
}


async def _nudge(request: Request, wake: dict[str, str]) -> None:
    try:
        client = await request.app.state.temporal.client()
        for connection_id, reason in wake.items():
            await nudge_mailbox_sync(client, connection_id, reason)
    except Exception:  # the run reads at its next poll anyway
        log.info("mailbox sync not nudged (Temporal unavailable)")


@router.post(
    "/inbound/graph/notifications",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=None,
    responses={200: {"content": {"text/plain": {}}, "description": "the validation token"}},
)
async def graph_notifications(
    request: Request,
    validation_token: Annotated[str | None, Query(alias="validationToken")] = None,
) -> Response:
    """Microsoft Graph change and lifecycle notifications for mailbox sync. The validation
    handshake echoes `validationToken` as text/plain. A notification only wakes the
    connection's sync run, and only when its clientState is the one we gave the subscription;
    anything else changes nothing (and is answered 202 all the same)."""
    if validation_token is not None:
        if not VALIDATION_TOKEN_RE.match(validation_token):
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, "validationToken: not a Graph validation token"
            )
        return PlainTextResponse(validation_token, headers={"X-Content-Type-Options": "nosniff"})
    body = await _read_body(request, NOTIFICATION_BYTES)
    try:
        post = loads_bounded(body)
        items = post.get("value") if isinstance(post, dict) else None
        if not isinstance(items, list):
            raise ValueError("no value list")
    except ValueError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            'The body is not a Graph notification collection ({"value": [...]}).',
        ) from None
    wake: dict[str, str] = {}
    engine = request.app.state.engine
    for item in items[:_MAX_NOTIFICATIONS]:
        if not isinstance(item, dict):
            continue
        found = await run_in_threadpool(
            inbound_paths_service.graph_owner,
            engine,
            str(item.get("subscriptionId", "")),
            str(item.get("clientState", "")),
        )
        if found is None:
            continue  # forged, or a subscription we no longer keep
        reason = _LIFECYCLE.get(str(item.get("lifecycleEvent", "")), "change")
        if wake.get(found) in (None, "change"):
            wake[found] = reason
    await _nudge(request, wake)
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post("/inbound/gmail/push", status_code=status.HTTP_204_NO_CONTENT, response_model=None)
async def gmail_push(request: Request, settings: SettingsDep) -> Response:
    """Gmail's Pub/Sub push for mailbox sync. The push's OIDC token must be Google's, for this
    endpoint's audience, from the configured service account (403 otherwise, and nothing
    changes). It only wakes the sync runs of the mailbox it names."""
    if not settings.gmail_pubsub_topic:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "Gmail push is not configured here (RECRUITMAIL_GMAIL_PUBSUB_TOPIC).",
        )
    body = await _read_body(request, NOTIFICATION_BYTES)
    authorization = request.headers.get("authorization", "")
    try:
        push = await run_in_threadpool(verify_gmail_push, settings, authorization, body)
    except PushRefused as refused:
        log.info("a Gmail push was refused (%s)", refused)
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "Not a push from the configured Pub/Sub subscription."
        ) from None
    engine = request.app.state.engine
    found = await run_in_threadpool(inbound_paths_service.gmail_owners, engine, push.mailbox)
    await _nudge(request, dict.fromkeys(found, "change"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
