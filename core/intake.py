"""Receiving mail: which recipients we serve, storing the bytes, and starting the routing run.

The SMTP receiver and the HTTP webhooks share this path. The raw bytes are committed before
the sender hears 250 (or 202), and the routing workflow starts after; if that start fails,
the sweeper starts it later from the stored row, so nothing is lost either way.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from core.db import session_scope
from core.models import (
    Company,
    Connection,
    ConnectionStatus,
    InboundRaw,
    InboundState,
    utcnow,
)
from core.settings import Settings
from workflows.receive_message import (
    ReceiveMessageInput,
    ReceiveMessageWorkflow,
    receive_workflow_id,
)
from workflows.search_attributes import COMPANY_ID, MAIL_STATUS

log = logging.getLogger(__name__)

# A cancelled or expired setup never registered its address for good.
_UNREGISTERED = (ConnectionStatus.CANCELLED.value, ConnectionStatus.EXPIRED.value)


@dataclass(frozen=True)
class StoredInbound:
    inbound_id: uuid.UUID
    company_id: uuid.UUID


def company_for_recipient(session: Session, settings: Settings, address: str) -> uuid.UUID | None:
    """The company a recipient address belongs to, or None if we do not serve it.

    Served are hosted addresses ({slug}-jobs@platform domain) and the custom addresses that
    companies registered through a connection.
    """
    local, _, domain = address.strip().lower().rpartition("@")
    if not local:
        return None
    if domain == settings.platform_mail_domain.lower():
        if not local.endswith("-jobs") or local.startswith("_"):
            return None  # "_" slugs are internal (the operators' pseudo-company)
        return session.exec(
            select(Company.id).where(Company.slug == local.removesuffix("-jobs"))
        ).first()
    return session.exec(
        select(Connection.company_id)
        .where(
            func.lower(Connection.custom_address) == f"{local}@{domain}",
            col(Connection.status).not_in(_UNREGISTERED),
        )
        .order_by(col(Connection.created_at).desc())
    ).first()


def store_inbound(
    engine: Engine,
    *,
    raw: bytes,
    mail_from: str,
    recipients: dict[str, uuid.UUID],
    channel: str,
) -> list[StoredInbound]:
    """Commit the bytes once per receiving company, in one transaction; return the rows."""
    digest = hashlib.sha256(raw).hexdigest()
    stored: list[StoredInbound] = []
    received_at = utcnow()
    with session_scope(engine) as session:
        seen: set[uuid.UUID] = set()
        for address, company_id in recipients.items():
            if company_id in seen:
                continue  # two addresses of one company: one copy to route
            seen.add(company_id)
            row = InboundRaw(
                company_id=company_id,
                raw=raw,
                sha256=digest,
                size=len(raw),
                recipient=address[:320],
                mail_from=mail_from[:320],
                channel=channel,
                received_at=received_at,
            )
            row.workflow_id = receive_workflow_id(str(row.id))
            session.add(row)
            stored.append(StoredInbound(row.id, company_id))
    return stored


async def start_routing(client: Client, settings: Settings, item: StoredInbound) -> None:
    """Start receive-message-{id}. A second start of the same row is a no-op."""
    try:
        await client.start_workflow(
            ReceiveMessageWorkflow.run,
            ReceiveMessageInput(
                inbound_id=str(item.inbound_id),
                company_id=str(item.company_id),
                closed_application_grace=settings.closed_application_grace,
            ),
            id=receive_workflow_id(str(item.inbound_id)),
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # Routing is idempotent, so a run that failed (database down too long) may rerun.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(COMPANY_ID, str(item.company_id)),
                    SearchAttributePair(MAIL_STATUS, InboundState.STORED.value),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:
        pass  # routed already, or running


async def start_all(client: Client, settings: Settings, items: list[StoredInbound]) -> None:
    """Start routing for freshly stored mail; failures are left to the sweeper."""
    for item in items:
        try:
            await start_routing(client, settings, item)
        except Exception:
            log.warning(
                "routing for inbound %s not started; the sweeper will retry",
                item.inbound_id,
                exc_info=True,
            )


def unstarted(engine: Engine, older_than: timedelta, limit: int = 100) -> list[StoredInbound]:
    """Stored mail still waiting for routing after `older_than`."""
    cutoff = utcnow() - older_than
    with Session(engine) as session:
        rows = session.exec(
            select(InboundRaw.id, InboundRaw.company_id)
            .where(
                InboundRaw.state == InboundState.STORED,
                col(InboundRaw.company_id).is_not(None),
                col(InboundRaw.received_at) < cutoff,
            )
            .order_by(col(InboundRaw.received_at))
            .limit(limit)
        ).all()
    return [StoredInbound(inbound_id, company_id) for inbound_id, company_id in rows]
