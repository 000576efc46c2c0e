"""Webhook endpoints as the API changes them: created with a secret shown once, updated,
rotated, tested, deleted; every change scoped to the caller's company and audited."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from api.schemas import (
    EventFeed,
    EventPublic,
    WebhookAttemptPublic,
    WebhookEndpointCreate,
    WebhookEndpointPublic,
    WebhookEndpointUpdate,
)
from api.services.common import get_owned
from core import audit, events, netguard, webhooks
from core.db import session_scope
from core.errors import Conflict, Refused
from core.events import CATALOGUE, EventType
from core.models import (
    Event,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from core.run_ids import webhook_workflow_id
from core.security import secret_box
from core.settings import Settings


def _unprocessable(message: str) -> Refused:
    return Refused(message)


def check_types(types: list[str]) -> list[str]:
    unknown = [t for t in types if t != "*" and t not in CATALOGUE]
    if unknown:
        raise _unprocessable(
            f"event_types: unknown {', '.join(sorted(unknown))}; known: "
            f'{", ".join(sorted(CATALOGUE))}, or ["*"] for all'
        )
    return list(dict.fromkeys(types))


async def check_url(settings: Settings, url: str) -> str:
    """https outside development, and a host on the internet (unless an operator allows
    private hosts). Where it resolves is checked again at every connection."""
    url = url.strip()
    problem = webhooks.url_problem(url, development=settings.is_development)
    if problem:
        raise _unprocessable(problem)
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        await netguard.resolve(
            host,
            parts.port or (443 if parts.scheme == "https" else 80),
            settings.dns_timeout_seconds,
            allow_private=settings.allow_private_hosts,
        )
    except netguard.InternalAddress as exc:
        raise _unprocessable(f"url: {exc}") from None
    except (TimeoutError, OSError):
        raise _unprocessable(f"url: the host name {host} cannot be resolved") from None
    return url


def public(endpoint: WebhookEndpoint, secret: str | None = None) -> WebhookEndpointPublic:
    return WebhookEndpointPublic(
        id=endpoint.id,
        url=endpoint.url,
        event_types=endpoint.event_types,
        description=endpoint.description,
        include_personal_data=endpoint.include_personal_data,
        disabled=endpoint.disabled,
        disabled_reason=endpoint.disabled_reason,
        disabled_at=endpoint.disabled_at,
        workflow_id=endpoint.workflow_id,
        created_at=endpoint.created_at,
        secret=secret,
    )


def _newest(session: Session) -> int:
    return int(session.exec(select(func.max(Event.seq))).one() or 0)


def create(
    session: Session, settings: Settings, user: User, body: WebhookEndpointCreate, url: str
) -> tuple[WebhookEndpoint, str]:
    """The endpoint and its secret (returned once); it receives events from now on."""
    count = session.exec(
        select(func.count()).where(WebhookEndpoint.company_id == user.company_id)
    ).one()
    if count >= settings.webhook_max_endpoints:
        raise Conflict(
            f"The company has {count} webhook endpoints, the most allowed "
            f"(RECRUITMAIL_WEBHOOK_MAX_ENDPOINTS={settings.webhook_max_endpoints}): delete one "
            "first. One endpoint can take every event type.",
        )
    endpoint_id = uuid.uuid4()
    secret = webhooks.new_secret()
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        company_id=user.company_id,
        url=url,
        event_types=check_types(body.event_types),
        description=body.description,
        include_personal_data=body.include_personal_data,
        secret_blob=secret_box(settings).seal_json(endpoint_id, {"current": secret}),
        cursor=_newest(session),
        workflow_id=webhook_workflow_id(str(endpoint_id)),
    )
    session.add(endpoint)
    _audit(
        session,
        user,
        endpoint,
        "webhook_endpoint.create",
        url=url,
        event_types=endpoint.event_types,
        include_personal_data=body.include_personal_data,
    )
    session.commit()
    return endpoint, secret


def update(
    session: Session,
    user: User,
    endpoint: WebhookEndpoint,
    body: WebhookEndpointUpdate,
    url: str | None,
) -> bool:
    """Apply the changes; True when the endpoint was enabled again (its run is woken)."""
    changes: dict[str, object] = {}
    if url is not None:
        endpoint.url = changes["url"] = url
    if body.event_types is not None:
        endpoint.event_types = check_types(body.event_types)
        changes["event_types"] = endpoint.event_types
    if body.description is not None:
        endpoint.description = changes["description"] = body.description
    enabled = False
    if body.disabled is not None and body.disabled != endpoint.disabled:
        endpoint.disabled = changes["disabled"] = body.disabled
        if body.disabled:
            endpoint.disabled_reason = f"disabled by {user.name}"
            endpoint.disabled_at = utcnow()
        else:
            # Enabled again: events from now on, not the backlog of the disabled time.
            endpoint.disabled_reason = endpoint.disabled_at = endpoint.failing_since = None
            endpoint.cursor = _newest(session)
            enabled = True
    endpoint.updated_at = utcnow()
    session.add(endpoint)
    _audit(session, user, endpoint, "webhook_endpoint.update", **changes)
    session.commit()
    return enabled


def rotate(session: Session, settings: Settings, user: User, endpoint: WebhookEndpoint) -> str:
    box = secret_box(settings)
    stored = box.open_json(endpoint.id, endpoint.secret_blob) or {}
    fresh = webhooks.rotated(stored, utcnow())
    endpoint.secret_blob = box.seal_json(endpoint.id, fresh)
    endpoint.updated_at = utcnow()
    session.add(endpoint)
    _audit(
        session,
        user,
        endpoint,
        "webhook_endpoint.rotate_secret",
        previous_valid_until=webhooks.overlap_until(fresh),
    )
    session.commit()
    return fresh["current"]


def test_event(session: Session, user: User, endpoint: WebhookEndpoint) -> Event:
    event = events.emit(
        session,
        user.company_id,
        EventType.WEBHOOK_TEST,
        {"endpoint_id": str(endpoint.id), "by_user_id": str(user.id)},
        endpoint_id=endpoint.id,
    )
    session.commit()
    return event


def remove(session: Session, user: User, endpoint: WebhookEndpoint) -> None:
    deliveries = select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint.id)
    session.execute(delete(WebhookAttempt).where(col(WebhookAttempt.delivery_id).in_(deliveries)))
    session.execute(delete(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint.id))
    _audit(session, user, endpoint, "webhook_endpoint.delete", url=endpoint.url)
    session.delete(endpoint)
    session.commit()


def redeliver(session: Session, user: User, event_id: str) -> list[uuid.UUID]:
    """Queue the event again for every enabled endpoint of the company that subscribes to it
    (a delivery that ended, delivered or not, starts over); the endpoints woken."""
    event = get_owned(session, Event, event_id, user.company_id, "event")
    now = utcnow()
    woken = []
    for endpoint in session.exec(
        select(WebhookEndpoint).where(
            WebhookEndpoint.company_id == user.company_id,
            WebhookEndpoint.disabled == False,  # noqa: E712 - SQL
        )
    ):
        subscribed = "*" in endpoint.event_types or event.type in endpoint.event_types
        if event.endpoint_id not in (None, endpoint.id) or not subscribed:
            continue
        delivery = session.exec(
            select(WebhookDelivery).where(
                WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.event_id == event.id
            )
        ).first() or WebhookDelivery(
            endpoint_id=endpoint.id, event_id=event.id, company_id=endpoint.company_id,
            seq=event.seq or 0,
        )  # fmt: skip
        delivery.status = "pending"
        delivery.attempts = 0
        delivery.next_attempt_at = now
        delivery.delivered_at = None
        session.add(delivery)
        woken.append(endpoint.id)
    audit.record(
        session, company_id=user.company_id, user_id=user.id, action="event.redeliver",
        target=f"event:{event.id}", endpoints=[str(e) for e in woken],
    )  # fmt: skip
    session.commit()
    return woken


def _audit(
    session: Session, user: User, endpoint: WebhookEndpoint, action: str, **detail: object
) -> None:
    audit.record(
        session, company_id=user.company_id, user_id=user.id, action=action,
        target=f"webhook_endpoint:{endpoint.id}", **detail,
    )  # fmt: skip


# -- the event feed ------------------------------------------------------------------------


def _cursor(value: str | None) -> int:
    if value is None or value == "":
        return 0
    if not value.isdigit() or len(value) > 18:
        raise Refused(
            "after: give the `next` value of an earlier answer (or nothing, to start at the "
            "oldest kept event)",
        )
    return int(value)


def _page(
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


def feed(
    session: Session, user: User, after: str | None, limit: int, types: str | None
) -> EventFeed:
    """The company's events in commit order after the cursor `after`, of the comma-separated
    `types` (all when none)."""
    wanted = [t.strip() for t in types.split(",") if t.strip()] if types else None
    unknown = [t for t in wanted or [] if t not in CATALOGUE]
    if unknown:
        raise Refused(f"types: unknown {', '.join(unknown)}; known: {', '.join(sorted(CATALOGUE))}")
    return _page(session, user, _cursor(after), limit, wanted)


# -- endpoints, read ----------------------------------------------------------------------


def owned(session: Session, endpoint_id: str, company_id: uuid.UUID) -> WebhookEndpoint:
    return get_owned(session, WebhookEndpoint, endpoint_id, company_id, "webhook endpoint")


def all_of(session: Session, user: User) -> list[WebhookEndpoint]:
    return list(
        session.exec(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.company_id == user.company_id)
            .order_by(col(WebhookEndpoint.created_at))
        ).all()
    )


def deliveries(
    session: Session, endpoint: WebhookEndpoint, limit: int
) -> list[WebhookAttemptPublic]:
    """The endpoint's delivery attempts, newest first."""
    rows = session.exec(
        select(WebhookAttempt, Event.type)
        .join(Event, col(Event.id) == col(WebhookAttempt.event_id))
        .where(WebhookAttempt.endpoint_id == endpoint.id)
        .order_by(col(WebhookAttempt.attempted_at).desc())
        .limit(limit)
    ).all()
    return [
        WebhookAttemptPublic(
            event_id=a.event_id,
            event_type=kind,
            attempted_at=a.attempted_at,
            outcome=a.outcome,
            status_code=a.status_code,
            latency_ms=a.latency_ms,
            error=a.error,
            response_body=a.response_body,
        )
        for a, kind in rows
    ]
