"""Receiving mail: which recipients we serve, and storing the bytes.

The SMTP receiver and the HTTP webhooks share this path. The raw bytes are committed before
the sender hears 250 (or 202); the routing run starts after (api/runs.py), and if that
start fails, the sweeper starts it later from the stored row, so nothing is lost either way.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, insert
from sqlmodel import Session, col, select

from core.connections import ownership, round_trip
from core.db import session_scope
from core.inbound import tokens
from core.models import Company, Connection, InboundRaw, utcnow
from core.run_ids import receive_workflow_id
from core.settings import Settings
from core.statuses import InboundState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredInbound:
    inbound_id: uuid.UUID
    company_id: uuid.UUID


def company_for_recipient(session: Session, settings: Settings, address: str) -> uuid.UUID | None:
    """The company a recipient address belongs to, or None if we do not serve it.

    Served are hosted addresses ({slug}-jobs@platform domain), and custom addresses that a
    company proved it owns (core/connections/ownership.py): the round trip's check message,
    sent to the address's mail exchanger, came back through its real routing. Registering
    proves nothing.
    """
    local, _, domain = address.strip().lower().rpartition("@")
    if not local:
        return None
    if domain == settings.platform_mail_domain.lower():
        key = round_trip.bounce_key(address)
        if key is not None:  # a delivery report about a check message still expected
            return session.exec(
                select(Connection.company_id).where(
                    col(Connection.check_token_hash) >= key,
                    col(Connection.check_token_hash) < key + "g",
                )
            ).first()
        slug = hosted_slug(settings, address)
        if slug is None:
            return None
        return session.exec(select(Company.id).where(Company.slug == slug)).first()
    return ownership.owner_of(session, f"{local}@{domain}")


def hosted_slug(settings: Settings, address: str) -> str | None:
    """The company slug of a hosted recruiting address (`acme-jobs@`, or with a reply-to token,
    `acme-jobs+{token}@`: the company's; whether the token is its own is checked when the
    message is routed), or None for any other address. A slug never changes and a company is
    never deleted, so a slug found once names the same company for good."""
    local, _, domain = address.strip().lower().rpartition("@")
    if not local or domain != settings.platform_mail_domain.lower():
        return None
    if round_trip.bounce_key(address) is not None:
        return None
    local = local.partition(tokens.SEPARATOR)[0]
    if not local.endswith("-jobs") or local.startswith("_"):
        return None  # "_" slugs are internal (the operators' pseudo-company)
    return local.removesuffix("-jobs")


@dataclass(frozen=True)
class Incoming:
    """One received message: its bytes, envelope sender, and the companies its recipients
    belong to (address → company)."""

    raw: bytes
    mail_from: str
    recipients: dict[str, uuid.UUID]
    channel: str
    # The SMTP client's address and HELO name (SPF checks them when the message is routed).
    client_ip: str = ""
    helo: str = ""


def store_inbound(
    engine: Engine,
    *,
    raw: bytes,
    mail_from: str,
    recipients: dict[str, uuid.UUID],
    channel: str,
) -> list[StoredInbound]:
    """Commit the bytes once per receiving company, in one transaction; return the rows."""
    [stored] = store_many(engine, [Incoming(raw, mail_from, recipients, channel)])
    return stored


def store_many(engine: Engine, messages: list[Incoming]) -> list[list[StoredInbound]]:
    """Commit several received messages in one transaction (the receiver's group commit);
    for each, its rows: one per receiving company."""
    received_at = utcnow()
    rows: list[InboundRaw] = []
    stored: list[list[StoredInbound]] = []
    for message in messages:
        digest = hashlib.sha256(message.raw).hexdigest()
        companies: dict[uuid.UUID, str] = {}
        for address, company_id in message.recipients.items():
            companies.setdefault(company_id, address)  # two addresses of one company: one copy
        ours = []
        for company_id, address in companies.items():
            row = InboundRaw(
                company_id=company_id,
                raw=message.raw,
                sha256=digest,
                size=len(message.raw),
                recipient=address[:320],
                mail_from=message.mail_from[:320],
                client_ip=message.client_ip[:64] or None,
                helo=message.helo[:255] or None,
                channel=message.channel,
                received_at=received_at,
            )
            row.workflow_id = receive_workflow_id(str(row.id))
            rows.append(row)
            ours.append(StoredInbound(row.id, company_id))
        stored.append(ours)
    with session_scope(engine) as session:
        # One executemany, without the unit of work's per-row flush (its bookkeeping was most
        # of the receiver's commit).
        session.execute(insert(InboundRaw), [row.model_dump() for row in rows])
    return stored


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
    return [StoredInbound(inbound_id, company_id) for inbound_id, company_id in rows if company_id]
