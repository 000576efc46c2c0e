"""`GET /metrics`: the API's requests, and the product's own figures, in Prometheus format.

Request metrics are labelled by route template (`/v1/messages/{message_id}`), never by the
path itself. The product's figures are read from the database at scrape time, so every API
replica reports the same totals (scrape one, or take `max` across them); their labels are
statuses, providers, kinds and reasons, never addresses, subjects or ids.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import Engine, case, func
from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.models import (
    BulkJob,
    Connection,
    Direction,
    Event,
    InboundRaw,
    MailboxSync,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from core.models import Message as MailMessage
from core.statuses import SETUP_STATUSES, BulkJobStatus, InboundState, MessageStatus, PathState

# Statuses a message ends in; `queued` and `sending` are counted as in progress.
FINAL = (
    MessageStatus.SENT,
    MessageStatus.FAILED,
    MessageStatus.BOUNCED,
    MessageStatus.CANCELLED,
)


class ProductCollector(Collector):
    """The figures operators alert on, counted in the database at each scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        with Session(self.engine) as session:
            yield from self._messages(session)
            yield from self._inbound(session)
            yield from self._setups(session)
            yield from self._bulk(session)
            yield from self._webhooks(session)

    def _messages(self, session: Session) -> Iterator[Metric]:
        ended = CounterMetricFamily(
            "recruitmail_messages",
            "Outbound messages that ended, by final status and provider.",
            labels=["status", "provider"],
        )
        attempts = CounterMetricFamily(
            "recruitmail_delivery_attempts",
            "Delivery attempts of outbound messages, by provider.",
            labels=["provider"],
        )
        in_progress = GaugeMetricFamily(
            "recruitmail_messages_in_progress",
            "Outbound messages queued or being sent.",
            labels=["status"],
        )
        rows = session.exec(
            select(
                MailMessage.status,
                MailMessage.transport,
                func.count(),
                func.coalesce(func.sum(MailMessage.attempts), 0),
            )
            .where(MailMessage.direction == Direction.OUTBOUND)
            .group_by(col(MailMessage.status), col(MailMessage.transport))
        ).all()
        by_provider: dict[str, float] = {}
        pending: dict[str, float] = {}
        for status, transport, count, tries in rows:
            provider = transport or "platform"
            by_provider[provider] = by_provider.get(provider, 0) + float(tries)
            if status in FINAL:
                ended.add_metric([status, provider], float(count))
            else:
                pending[status] = pending.get(status, 0) + float(count)
        for provider, total in by_provider.items():
            attempts.add_metric([provider], total)
        for state, waiting in pending.items():
            in_progress.add_metric([state], waiting)
        yield ended
        yield attempts
        yield in_progress

    def _inbound(self, session: Session) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "recruitmail_inbound_messages",
            "Inbound messages routed, by kind (mail, auto_reply, bounce) and match reason.",
            labels=["kind", "match_reason"],
        )
        for kind, reason, count in session.exec(
            select(MailMessage.kind, MailMessage.match_reason, func.count())
            .where(MailMessage.direction == Direction.INBOUND)
            .group_by(col(MailMessage.kind), col(MailMessage.match_reason))
        ).all():
            received.add_metric([kind, reason or "none"], float(count))
        yield received
        oldest = session.exec(
            select(func.min(InboundRaw.received_at)).where(InboundRaw.state == InboundState.STORED)
        ).one()
        age = GaugeMetricFamily(
            "recruitmail_inbound_oldest_unrouted_seconds",
            "Age of the oldest inbound message stored but not yet routed (0 when none).",
        )
        age.add_metric([], max((utcnow() - _aware(oldest)).total_seconds(), 0) if oldest else 0)
        yield age

    def _setups(self, session: Session) -> Iterator[Metric]:
        setups = GaugeMetricFamily(
            "recruitmail_connection_setups",
            "Connection setups under way, by state (awaiting_admin_consent and the others).",
            labels=["state", "kind"],
        )
        for state, kind, count in session.exec(
            select(Connection.status, Connection.kind, func.count())
            .where(col(Connection.status).in_(SETUP_STATUSES))
            .group_by(col(Connection.status), col(Connection.kind))
        ).all():
            setups.add_metric([state, kind], float(count))
        yield setups
        redirect = GaugeMetricFamily(
            "recruitmail_connection_redirect_checks",
            "Connections by the state of their redirect check (not_seen needs an admin).",
            labels=["status"],
        )
        for status, count in session.exec(
            select(Connection.redirect_status, func.count()).group_by(
                col(Connection.redirect_status)
            )
        ).all():
            redirect.add_metric([status], float(count))
        yield redirect
        waiting = GaugeMetricFamily(
            "recruitmail_consent_wait_oldest_seconds",
            "How long the oldest setup has waited for an administrator's consent (0 if none).",
        )
        since = session.exec(
            select(func.min(Connection.updated_at)).where(
                Connection.status == "awaiting_admin_consent"
            )
        ).one()
        waiting.add_metric([], max((utcnow() - _aware(since)).total_seconds(), 0) if since else 0)
        yield waiting

    def _bulk(self, session: Session) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            "recruitmail_bulk_jobs_in_progress", "Bulk sends queued or running."
        )
        count = session.exec(
            select(func.count())
            .select_from(BulkJob)
            .where(col(BulkJob.status).in_([BulkJobStatus.QUEUED, BulkJobStatus.RUNNING]))
        ).one()
        running.add_metric([], float(count))
        yield running

    def _webhooks(self, session: Session) -> Iterator[Metric]:
        attempts = CounterMetricFamily(
            "recruitmail_webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, failed, gone).",
            labels=["outcome"],
        )
        for outcome, count in session.exec(
            select(WebhookAttempt.outcome, func.count()).group_by(col(WebhookAttempt.outcome))
        ).all():
            attempts.add_metric([outcome], float(count))
        yield attempts
        latency = HistogramMetricFamily(
            "recruitmail_webhook_delivery_duration_seconds",
            "How long endpoints took to answer a delivery.",
        )
        columns = [
            func.sum(case((col(WebhookAttempt.latency_ms) <= bound * 1000, 1), else_=0))
            for bound in WEBHOOK_BUCKETS
        ]
        row = session.exec(
            select(func.count(), func.coalesce(func.sum(WebhookAttempt.latency_ms), 0), *columns)
        ).one()
        total, summed = row[0], row[1]
        counts: list[int | None] = list(row[2:])
        buckets = [(str(b), float(c or 0)) for b, c in zip(WEBHOOK_BUCKETS, counts, strict=True)]
        latency.add_metric([], [*buckets, ("+Inf", float(total))], float(summed) / 1000)
        yield latency
        # No endpoint's id in a label (unauthenticated /metrics would list every company's):
        # the oldest wait over all enabled endpoints, and how many endpoints are behind.
        oldest = GaugeMetricFamily(
            "recruitmail_webhook_oldest_undelivered_seconds",
            "Age of the oldest event still waiting to reach an enabled endpoint (0 when none).",
        )
        behind = GaugeMetricFamily(
            "recruitmail_webhook_endpoints_behind",
            "Enabled endpoints with an event waiting for over an hour.",
        )
        now = utcnow()
        waits = [
            max((now - _aware(since)).total_seconds(), 0.0)
            for since in session.exec(
                select(func.min(Event.created_at))
                .select_from(WebhookDelivery)
                .join(Event, col(Event.id) == col(WebhookDelivery.event_id))
                .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
                .where(WebhookDelivery.status == "pending", WebhookEndpoint.disabled == False)  # noqa: E712
                .group_by(col(WebhookDelivery.endpoint_id))
            ).all()
            if since is not None
        ]
        oldest.add_metric([], max(waits, default=0.0))
        behind.add_metric([], float(sum(1 for wait in waits if wait > 3600)))
        yield oldest
        yield behind
        yield from _mailbox_sync(session, now)


def _mailbox_sync(session: Session, now: datetime) -> Iterator[Metric]:
    """Mailbox sync: how far behind the furthest-behind syncing mailbox is (seconds since its
    last successful read), and the syncs by state; no connection id in a label."""
    lag = GaugeMetricFamily(
        "recruitmail_mailbox_sync_lag_seconds",
        "Seconds since the last successful read of the syncing mailbox furthest behind.",
    )
    states = GaugeMetricFamily(
        "recruitmail_mailbox_syncs", "Mailbox syncs by state.", labels=["provider", "state"]
    )
    rows = session.exec(
        select(
            MailboxSync.provider,
            MailboxSync.state,
            MailboxSync.last_success_at,
            MailboxSync.created_at,
        )
    ).all()
    behind = [
        max((now - _aware(last or created)).total_seconds(), 0.0)
        for _, state, last, created in rows
        if state in (PathState.ACTIVE, PathState.FAILING)
    ]
    lag.add_metric([], max(behind, default=0.0))
    counted: dict[tuple[str, str], int] = {}
    for provider, state, _, _ in rows:
        counted[(provider, state)] = counted.get((provider, state), 0) + 1
    for (provider, state), count in sorted(counted.items()):
        states.add_metric([provider, state], float(count))
    yield lag
    yield states


# Seconds: endpoints must answer within 10.
WEBHOOK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Metrics:
    """One registry per app: request counts and latencies, and the product's figures."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "recruitmail_http_requests",
            "HTTP requests, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "recruitmail_http_request_duration_seconds",
            "HTTP request latency, by method and route template.",
            ["method", "route"],
            registry=self.registry,
        )
        self.registry.register(ProductCollector(engine))

    def response(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """Pure ASGI: counts each request once routing has named its route."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            # Labels take only known values: any made-up method or path would be a new series.
            route = getattr(scope.get("route"), "path", None) or "other"
            method = scope.get("method", "")
            method = method if method in KNOWN_METHODS else "other"
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
