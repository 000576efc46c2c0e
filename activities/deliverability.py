"""The daily deliverability check's steps: find live connections, check one (DNS through the
one resolver, outside the transaction that records the report)."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import activity

from contracts.deliverability import (
    CHECK_DELIVERABILITY,
    FIND_CONNECTIONS_TO_CHECK,
    DeliverabilityBatch,
    DeliverabilityContract,
    DeliverabilityOutcome,
    DeliverabilityPage,
    DeliverabilityTarget,
)
from core.db import session_scope
from core.deliverability import checks
from core.models import Connection, utcnow
from core.settings import Settings
from core.statuses import LIVE_STATUSES


class DeliverabilityActivities(DeliverabilityContract):
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings

    @activity.defn(name=FIND_CONNECTIONS_TO_CHECK)
    def find_connections_to_check(self, input: DeliverabilityPage) -> DeliverabilityBatch:
        with Session(self._engine) as session:
            query = select(Connection.id).where(col(Connection.status).in_(list(LIVE_STATUSES)))
            if input.after:
                query = query.where(col(Connection.id) > uuid.UUID(input.after))
            ids = list(
                session.exec(query.order_by(col(Connection.id)).limit(input.limit + 1)).all()
            )
        page = [str(i) for i in ids[: input.limit]]
        return DeliverabilityBatch(page, len(ids) > input.limit, page[-1] if page else "")

    @activity.defn(name=CHECK_DELIVERABILITY)
    def check_deliverability(self, input: DeliverabilityTarget) -> DeliverabilityOutcome:
        connection_id = input.connection_id
        with Session(self._engine, expire_on_commit=False) as session:
            connection = session.get(Connection, uuid.UUID(connection_id))
        if connection is None:
            return DeliverabilityOutcome("")
        report = checks.for_connection(connection, self._settings)  # DNS: no lock held
        with session_scope(self._engine) as session:
            current = session.get(Connection, uuid.UUID(connection_id))
            if current is None:
                return DeliverabilityOutcome("")
            changed = checks.record(session, current, report, utcnow().isoformat())
        return DeliverabilityOutcome(report.status, changed)

    @property
    def all(self) -> list:
        return [self.find_connections_to_check, self.check_deliverability]
