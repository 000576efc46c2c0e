"""Activities of webhook-endpoint: queue an endpoint's new events, attempt what is due, and
record every attempt; tell the admins when an endpoint is disabled."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Engine, func, update
from sqlmodel import Session, col, select
from temporalio import activity

from activities.accounts import Accounts
from activities.common import heartbeating, send_platform_mail
from contracts.webhooks import (
    DELIVER_WEBHOOKS,
    TELL_ADMINS_ENDPOINT_DISABLED,
    DeliveryRound,
    EndpointRef,
    WebhookContract,
)
from core import events, webhooks
from core.db import get_or_fail, session_scope
from core.events import EventType
from core.models import (
    Company,
    Event,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from core.notify import endpoint_disabled_notice
from core.people import company_admins
from providers.base import Outgoing
from providers.http import guarded_client

# Deliveries attempted per round, and at once; events queued per round.
ROUND_SIZE = 50
PARALLEL = 8
QUEUE_SIZE = 500


@dataclass(frozen=True)
class _Due:
    delivery_id: uuid.UUID
    event_id: uuid.UUID
    body: bytes


@dataclass(frozen=True)
class _Target:
    url: str
    secrets: list[str]
    due: list[_Due]


@dataclass(frozen=True)
class _Answer:
    ok: bool
    status_code: int | None
    latency_ms: int
    error: str | None
    body: str
    gone: bool = False  # 410: the receiver says the endpoint no longer exists
    down: bool = False  # no answer, or 5xx/429: the endpoint itself is in trouble


class WebhookActivities(WebhookContract):
    def __init__(self, engine: Engine, accounts: Accounts) -> None:
        self._engine = engine
        self._accounts = accounts
        self._settings = accounts.settings
        self._box = accounts.box
        self._clients: dict[int, httpx.AsyncClient] = {}
        total = self._settings.webhook_concurrency
        self._shares = webhooks.FairShare(
            total, self._settings.webhook_company_concurrency, reserve=max(1, total // 4)
        )

    def _client(self) -> httpx.AsyncClient:
        """One pooled, guarded client per event loop."""
        loop = id(asyncio.get_running_loop())
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = self._clients[loop] = guarded_client(
                self._settings, self._settings.webhook_timeout_seconds
            )
        return client

    @activity.defn(name=DELIVER_WEBHOOKS)
    async def deliver_webhooks(self, input: EndpointRef) -> DeliveryRound:
        """A round, within the company's fair share of this worker's rounds."""
        if not self._shares.take(input.company_id):
            return DeliveryRound(busy=True)
        try:
            return await self._round(input)
        finally:
            self._shares.give_back(input.company_id)

    async def _round(self, input: EndpointRef) -> DeliveryRound:
        endpoint_id = uuid.UUID(input.endpoint_id)
        target = await asyncio.to_thread(self._queue, endpoint_id)
        if target is None:
            return DeliveryRound(deleted=True)
        if isinstance(target, DeliveryRound):
            return target  # disabled
        result = DeliveryRound()
        activity.heartbeat(0)
        for start in range(0, len(target.due), PARALLEL):
            chunk = target.due[start : start + PARALLEL]
            answers = await heartbeating(
                asyncio.gather(*(self._post(target, item) for item in chunk))
            )
            disabled_now = await asyncio.to_thread(
                self._record, endpoint_id, list(zip(chunk, answers, strict=True))
            )
            result.delivered += sum(1 for a in answers if a.ok)
            result.failed += sum(1 for a in answers if not a.ok)
            if disabled_now:
                result.disabled = result.disabled_now = True
                return result
            down = next((item for item, a in zip(chunk, answers, strict=True) if a.down), None)
            if down is not None:
                # The endpoint itself is in trouble: what else is due waits for the same retry,
                # rather than a timeout each now.
                rest = [d.delivery_id for d in target.due[start + PARALLEL :]]
                await asyncio.to_thread(self._defer, down.delivery_id, rest)
                break
            activity.heartbeat(start)
        result.more, result.next_due_in = await asyncio.to_thread(self._due, endpoint_id)
        return result

    # -- queueing -------------------------------------------------------------------------------

    def _queue(self, endpoint_id: uuid.UUID) -> _Target | DeliveryRound | None:
        """Number new events, queue this endpoint's, and read what is due now."""
        with session_scope(self._engine) as session:
            events.sequence(session)
        with session_scope(self._engine) as session:
            endpoint = session.get(WebhookEndpoint, endpoint_id)
            if endpoint is None:
                return None
            if endpoint.disabled:
                return DeliveryRound(disabled=True)
            self._enqueue(session, endpoint)
            now = utcnow()
            due = session.exec(
                select(WebhookDelivery, Event)
                .join(Event, col(Event.id) == col(WebhookDelivery.event_id))
                .where(
                    WebhookDelivery.endpoint_id == endpoint.id,
                    WebhookDelivery.status == "pending",
                    col(WebhookDelivery.next_attempt_at) <= now,
                )
                .order_by(col(WebhookDelivery.seq))
                .limit(ROUND_SIZE)
            ).all()
            stored = self._box.open_json(endpoint.id, endpoint.secret_blob) or {}
            return _Target(
                url=endpoint.url,
                secrets=webhooks.signing_secrets(stored, now),
                due=[
                    _Due(
                        delivery.id,
                        event.id,
                        _body(events.public(event, personal=endpoint.include_personal_data)),
                    )
                    for delivery, event in due
                ],
            )

    def _enqueue(self, session: Session, endpoint: WebhookEndpoint) -> None:
        """A delivery row for each of the company's events after the endpoint's cursor that it
        subscribed to; the cursor moves past every event looked at."""
        found = session.exec(
            select(Event)
            .where(
                Event.company_id == endpoint.company_id,
                col(Event.seq) > endpoint.cursor,
                (col(Event.endpoint_id).is_(None)) | (col(Event.endpoint_id) == endpoint.id),
            )
            .order_by(col(Event.seq))
            .limit(QUEUE_SIZE)
        ).all()
        if not found:
            return
        wanted = set(endpoint.event_types)
        now = utcnow()
        for event in found:
            targeted = event.endpoint_id == endpoint.id
            if targeted or "*" in wanted or event.type in wanted:
                session.add(
                    WebhookDelivery(
                        endpoint_id=endpoint.id,
                        event_id=event.id,
                        company_id=endpoint.company_id,
                        seq=event.seq or 0,
                        next_attempt_at=now,
                    )
                )
        endpoint.cursor = int(found[-1].seq or endpoint.cursor)
        session.add(endpoint)

    # -- one attempt -----------------------------------------------------------------------------

    async def _post(self, target: _Target, item: _Due) -> _Answer:
        timestamp = int(time.time())
        headers = webhooks.headers(str(item.event_id), timestamp, item.body, target.secrets)
        started = time.monotonic()
        limit = webhooks.RESPONSE_BODY_LIMIT
        try:
            async with asyncio.timeout(self._settings.webhook_timeout_seconds):
                async with self._client().stream(
                    "POST", target.url, content=item.body, headers=headers
                ) as response:
                    body = b""
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) >= limit:
                            break
        except TimeoutError:
            return _Answer(
                False, None, _ms(started), "no answer within "
                f"{self._settings.webhook_timeout_seconds:g} seconds", "", down=True,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            return _Answer(False, None, _ms(started), _transport_error(exc), "", down=True)
        text = body[:limit].decode("utf-8", "replace")
        status = response.status_code
        if 200 <= status < 300:
            return _Answer(True, status, _ms(started), None, text)
        error = f"answered {status}"
        if 300 <= status < 400:
            error += " (a redirect; redirects are not followed: give the final URL)"
        return _Answer(
            False, status, _ms(started), error, text,
            gone=status == 410, down=status == 429 or status >= 500,
        )  # fmt: skip

    def _record(self, endpoint_id: uuid.UUID, attempts: list[tuple[_Due, _Answer]]) -> bool:
        """The attempts, their deliveries' new states, and the endpoint's, in one transaction;
        True when they disabled the endpoint (a 410, or failures for longer than allowed)."""
        now = utcnow()
        schedule = tuple(self._settings.webhook_retry_schedule)
        with session_scope(self._engine) as session:
            endpoint = session.get(WebhookEndpoint, endpoint_id)
            if endpoint is None:
                return False
            reason = None
            for item, answer in attempts:
                delivery = session.get(WebhookDelivery, item.delivery_id)
                if delivery is None:
                    continue
                delivery.attempts += 1
                outcome = "delivered" if answer.ok else ("gone" if answer.gone else "failed")
                session.add(
                    WebhookAttempt(
                        delivery_id=delivery.id,
                        endpoint_id=endpoint.id,
                        event_id=item.event_id,
                        attempted_at=now,
                        outcome=outcome,
                        status_code=answer.status_code,
                        latency_ms=answer.latency_ms,
                        error=answer.error,
                        response_body=webhooks.answer_to_keep(
                            answer.body, personal=endpoint.include_personal_data
                        ),
                    )
                )
                if answer.ok:
                    delivery.status = "delivered"
                    delivery.delivered_at = now
                    delivery.next_attempt_at = None
                    endpoint.failing_since = None
                else:
                    wait = webhooks.next_attempt(delivery.attempts, schedule)
                    delivery.status = "pending" if wait is not None else "failed"
                    delivery.next_attempt_at = now + wait if wait is not None else None
                    endpoint.failing_since = endpoint.failing_since or now
                session.add(delivery)
                if answer.gone:
                    reason = "it answered 410 Gone, which says the endpoint no longer exists."
                elif endpoint.failing_since and now - endpoint.failing_since >= (
                    self._settings.webhook_disable_after
                ):
                    reason = (
                        f"every delivery failed for "
                        f"{_days(self._settings.webhook_disable_after)} (last: {answer.error})."
                    )
            if reason:
                _disable(session, endpoint, reason, now)
            session.add(endpoint)
            return reason is not None

    def _defer(self, failed: uuid.UUID, rest: list[uuid.UUID]) -> None:
        with session_scope(self._engine) as session:
            retry_at = session.exec(
                select(WebhookDelivery.next_attempt_at).where(WebhookDelivery.id == failed)
            ).one()
            if rest and retry_at is not None:
                session.execute(
                    update(WebhookDelivery)
                    .where(col(WebhookDelivery.id).in_(rest))
                    .values(next_attempt_at=retry_at)
                )

    def _due(self, endpoint_id: uuid.UUID) -> tuple[bool, float | None]:
        """(more is due now, seconds until the earliest retry)."""
        with Session(self._engine) as session:
            earliest = session.exec(
                select(func.min(WebhookDelivery.next_attempt_at)).where(
                    WebhookDelivery.endpoint_id == endpoint_id,
                    WebhookDelivery.status == "pending",
                )
            ).one()
        if earliest is None:
            return False, None
        wait = (_aware(earliest) - utcnow()).total_seconds()
        return wait <= 0, max(wait, 0.0)

    # -- telling the admins ----------------------------------------------------------------------

    @activity.defn(name=TELL_ADMINS_ENDPOINT_DISABLED)
    async def tell_admins_endpoint_disabled(self, input: EndpointRef) -> None:
        mails = await asyncio.to_thread(self._disabled_notices, uuid.UUID(input.endpoint_id))
        await send_platform_mail(self._accounts, mails)

    def _disabled_notices(self, endpoint_id: uuid.UUID) -> list[Outgoing]:
        with Session(self._engine) as session:
            endpoint = session.get(WebhookEndpoint, endpoint_id)
            if endpoint is None or not endpoint.disabled:
                return []
            company = get_or_fail(session, Company, endpoint.company_id)

            return [
                Outgoing.of(
                    endpoint_disabled_notice(
                        company=company.name,
                        hosted=self._settings.hosted_address(company.slug),
                        domain=self._settings.platform_mail_domain,
                        recipient=admin.email,
                        recipient_name=admin.name,
                        url=endpoint.url,
                        reason=endpoint.disabled_reason or "it was disabled.",
                        now=utcnow(),
                    ),
                    f"webhook-disabled-{endpoint.id}",
                    str(company.id),
                )
                for admin in company_admins(session, company.id)
            ]

    @property
    def all(self) -> list:
        return [self.deliver_webhooks, self.tell_admins_endpoint_disabled]


def _disable(session: Session, endpoint: WebhookEndpoint, reason: str, now: datetime) -> None:
    """Stop delivering to the endpoint, and say so in the feed and to its other endpoints."""
    endpoint.disabled = True
    endpoint.disabled_reason = reason
    endpoint.disabled_at = now
    endpoint.updated_at = now
    events.emit(
        session,
        endpoint.company_id,
        EventType.WEBHOOK_ENDPOINT_DISABLED,
        {"endpoint_id": str(endpoint.id), "reason": reason},
    )


def _body(event: dict[str, object]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _transport_error(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if "internal address" in text:
        return f"refused: {text}"
    return f"could not connect ({text})"


def _days(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:g} days" if days >= 1 else f"{delta.total_seconds():g} seconds"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
