"""Routing stored inbound mail: parse, classify, match a candidate, store, in one transaction."""

from __future__ import annotations

import threading
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from temporalio import activity

from contracts.inbound import (
    ROUTE_INBOUND_MESSAGE,
    ROUTE_INBOUND_MESSAGES,
    InboundContract,
    ReceiveMessageResult,
    RouteInput,
    RouteManyInput,
)
from core.db import session_scope
from core.deliverability import checks, dkim
from core.inbound import ParsedMail, parse, routing
from core.inbound.auth import NOT_CHECKED, SenderAuth, authenticate
from core.models import (
    InboundRaw,
)
from core.security import secret_box
from core.settings import Settings
from core.statuses import (
    InboundState,
)

# Outbound messages a bounce may still change: a bounce can overtake our own `sent` write.


class InboundActivities(InboundContract):
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._box = secret_box(settings)  # files at rest
        self._keys = self._box.signing_keys()  # reply-to tokens' MACs
        # SQLite takes one writer at a time, and a writer that finds it busy sleeps (up to
        # 100 ms a try): the worker's routing runs queue here instead, one at a time, which
        # leaves the lock's gaps to the receiver, whose 250s wait for their own writes.
        self._one_writer: AbstractContextManager[Any] = (
            threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()
        )

    @activity.defn(name=ROUTE_INBOUND_MESSAGE)
    def route_inbound_message(self, input: RouteInput) -> ReceiveMessageResult:
        return self._route_once(uuid.UUID(input.inbound_id), input.closed_application_grace)

    @activity.defn(name=ROUTE_INBOUND_MESSAGES)
    def route_inbound_messages(self, input: RouteManyInput) -> list[ReceiveMessageResult | None]:
        results: list[ReceiveMessageResult | None] = []
        for inbound_id in input.inbound_ids:
            try:
                results.append(
                    self._route_once(uuid.UUID(inbound_id), input.closed_application_grace)
                )
            except Exception:
                # Its own run retries it with the full policy; the others are routed already.
                activity.logger.warning("inbound %s left to a run of its own", inbound_id)
                results.append(None)
        return results

    @property
    def all(self) -> list:
        return [self.route_inbound_message, self.route_inbound_messages]

    def _route_once(self, inbound_id: uuid.UUID, grace: timedelta) -> ReceiveMessageResult:
        # Parsing and the sender's DNS lookups come first, outside the writer's turn.
        prepared = self._prepare(inbound_id)
        with self._one_writer:
            try:
                return self.route(inbound_id, grace, prepared)
            except IntegrityError:
                # The same Message-ID was stored for this company by a concurrent run:
                # recording this copy as its duplicate is the whole job now.
                return self.route(inbound_id, grace, prepared)

    def _prepare(self, inbound_id: uuid.UUID) -> tuple[ParsedMail, SenderAuth] | None:
        """The stored message parsed, and who really sent it (SPF, DKIM, DMARC through the
        resolver); None when it is not waiting for routing."""
        with Session(self._engine) as session:
            raw = session.get(InboundRaw, inbound_id)
            if raw is None or raw.state != InboundState.STORED:
                return None
            data, client_ip, helo, mail_from = raw.raw, raw.client_ip, raw.helo, raw.mail_from
            company_id = raw.company_id
        parsed = parse(data)
        if parsed.send_test:  # the connection's own message: the end of its round trip
            self._check_deliverability(company_id, parsed, data)
        if not self._settings.inbound_sender_auth or parsed.check_token or parsed.send_test:
            return parsed, NOT_CHECKED
        auth = authenticate(
            data,
            parsed.from_address,
            client_ip=client_ip or "",
            helo=helo or "",
            mail_from=mail_from,
            resolver=self._settings.resolver(),
        )
        return parsed, auth

    def _check_deliverability(
        self, company_id: uuid.UUID | None, parsed: ParsedMail, data: bytes
    ) -> None:
        """The send leg's message came back through the redirect: its DKIM signatures, and
        its connection's deliverability report made with them (DNS, before the routing
        transaction; recorded by it)."""
        parsed.dkim_signatures = [
            {"domain": s.domain, "selector": s.selector, "ok": s.ok, "detail": s.detail}
            for s in dkim.signatures(data, self._settings.resolver())
        ]
        with Session(self._engine, expire_on_commit=False) as session:
            connection = routing.sending_connection(session, company_id, parsed.from_address)
        if connection is not None:
            connection.dkim_check = {"signatures": parsed.dkim_signatures}
            parsed.deliverability = checks.for_connection(connection, self._settings)

    def route(
        self,
        inbound_id: uuid.UUID,
        grace: timedelta,
        prepared: tuple[ParsedMail, SenderAuth] | None = None,
    ) -> ReceiveMessageResult:
        workflow_id = activity.info().workflow_id if activity.in_activity() else None
        with session_scope(self._engine) as session:
            routed = routing.route(
                session,
                self._settings,
                self._box,
                self._keys,
                inbound_id,
                grace,
                prepared,
                workflow_id,
            )
        return ReceiveMessageResult(**asdict(routed))
