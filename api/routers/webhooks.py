"""Webhook endpoints: where a company's events are pushed, signed to the Standard Webhooks
specification. Everything is scoped to the caller's company."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.concurrency import run_in_threadpool

from api.deps import SessionDep, SettingsAdmin, SettingsDep, TemporalDep
from api.runs import wake_endpoint
from api.schemas import (
    WebhookAttemptPublic,
    WebhookEndpointCreate,
    WebhookEndpointPublic,
    WebhookEndpointUpdate,
)
from api.services import webhooks as service
from core.run_ids import webhook_workflow_id

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"])


@router.post("", response_model=WebhookEndpointPublic, status_code=status.HTTP_201_CREATED)
async def create_endpoint(
    body: WebhookEndpointCreate,
    user: SettingsAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> WebhookEndpointPublic:
    """Events from now on are pushed to `url`. The answer shows the signing `secret` once."""
    url = await service.check_url(settings, body.url)
    endpoint, secret = await run_in_threadpool(service.create, session, settings, user, body, url)
    await wake_endpoint(temporal, settings, endpoint.id, endpoint.company_id)
    return service.public(endpoint, secret)


@router.get("", response_model=list[WebhookEndpointPublic])
def list_endpoints(user: SettingsAdmin, session: SessionDep) -> list[WebhookEndpointPublic]:
    return [service.public(e) for e in service.all_of(session, user)]


@router.get("/{endpoint_id}", response_model=WebhookEndpointPublic)
def read_endpoint(
    endpoint_id: str, user: SettingsAdmin, session: SessionDep
) -> WebhookEndpointPublic:
    return service.public(service.owned(session, endpoint_id, user.company_id))


@router.patch("/{endpoint_id}", response_model=WebhookEndpointPublic)
async def update_endpoint(
    endpoint_id: str,
    body: WebhookEndpointUpdate,
    user: SettingsAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> WebhookEndpointPublic:
    """Change `url`, `event_types`, `description`, or `disabled`. Enabled again, it receives
    events from then on."""
    endpoint = await run_in_threadpool(service.owned, session, endpoint_id, user.company_id)
    url = await service.check_url(settings, body.url) if body.url is not None else None
    enabled = await run_in_threadpool(service.update, session, user, endpoint, body, url)
    if enabled:
        await wake_endpoint(temporal, settings, endpoint.id, endpoint.company_id)
    return service.public(endpoint)


@router.delete("/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_endpoint(
    endpoint_id: str, user: SettingsAdmin, session: SessionDep, temporal: TemporalDep
) -> Response:
    endpoint = await run_in_threadpool(service.owned, session, endpoint_id, user.company_id)
    await run_in_threadpool(service.remove, session, user, endpoint)
    try:  # its run ends at its next round anyway, finding the endpoint gone
        await temporal.get_workflow_handle(webhook_workflow_id(str(endpoint.id))).signal("stop")
    except Exception:  # noqa: S110 - nothing left to stop
        pass
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{endpoint_id}/rotate-secret", response_model=WebhookEndpointPublic)
def rotate_secret(
    endpoint_id: str, user: SettingsAdmin, session: SessionDep, settings: SettingsDep
) -> WebhookEndpointPublic:
    """A new signing secret, shown once. For 24 hours both the new and the old secret sign
    every delivery (two signatures), so receivers switch without a gap."""
    endpoint = service.owned(session, endpoint_id, user.company_id)
    secret = service.rotate(session, settings, user, endpoint)
    return service.public(endpoint, secret)


@router.post("/{endpoint_id}/test", status_code=status.HTTP_202_ACCEPTED)
async def test_endpoint(
    endpoint_id: str,
    user: SettingsAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, str]:
    """Send a `webhook.test` event to this endpoint alone; follow it in its deliveries."""
    endpoint = await run_in_threadpool(service.owned, session, endpoint_id, user.company_id)
    event = await run_in_threadpool(service.test_event, session, user, endpoint)
    await wake_endpoint(temporal, settings, endpoint.id, endpoint.company_id)
    return {"event_id": str(event.id)}


@router.get("/{endpoint_id}/deliveries", response_model=list[WebhookAttemptPublic])
def list_deliveries(
    endpoint_id: str,
    user: SettingsAdmin,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[WebhookAttemptPublic]:
    """The endpoint's delivery attempts, newest first: time, status code, latency, error and
    the start of the answer (at most 1 KiB)."""
    endpoint = service.owned(session, endpoint_id, user.company_id)
    return service.deliveries(session, endpoint, limit)
