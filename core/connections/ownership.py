"""Who owns a custom address, and the rules that decide it.

An address belongs to a company only when that company proved it through a path it does not
control: the round trip's check message, sent by the platform to the address's mail exchanger,
came back through the address's real mail routing to the company's hosted address. Creating a
connection proves nothing, so an unproven claim blocks nobody. The first company to prove an
address owns it (one `address_owner` row per address, so a concurrent second proof conflicts in
the database) until that company disables or deletes the connections that proved it.

Hosted addresses ({slug}-jobs@ the platform domain) are never custom addresses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from core import events
from core.connections import round_trip
from core.models import AddressOwner, Connection, utcnow
from core.settings import Settings
from core.statuses import LIVE_STATUSES, ConnectionStatus, RedirectStatus

# A connection in one of these has been let go by its company (disabled, deleted, or a setup
# that ended unfinished): it proves nothing any more.
LET_GO = (
    ConnectionStatus.DISABLED,
    ConnectionStatus.CANCELLED,
    ConnectionStatus.FAILED,
    ConnectionStatus.EXPIRED,
)


def key(address: str) -> str:
    return address.strip().lower()


def is_hosted_domain(settings: Settings, address: str) -> bool:
    """The address is in the platform's mail domain (or below it): a hosted address, never a
    company's own."""
    domain = key(address).rpartition("@")[2]
    platform = settings.platform_mail_domain.lower()
    return domain == platform or domain.endswith("." + platform)


def hosted_refusal(address: str) -> str:
    return (
        f"custom_address: {address} is in Recruitmail's own mail domain. Hosted addresses "
        "work without a connection; a connection is for an address in the company's own domain."
    )


# A domain whose MX is the platform's own receiver sends every sender's mail here, the check
# message of any claimant included: arriving proves nothing. Its owner proves the domain instead
# with a TXT record at this name, whose value only this company's admins are shown.
MX_TXT_NAME = "_recruitmail"


def mx_verification(key: bytes, company_id: uuid.UUID, domain: str) -> str:
    """The TXT value that proves `domain` is this company's (a MAC of both, keyed with the
    platform's secret: no other company can compute it)."""
    message = f"mx-ownership|{company_id}|{domain.lower().rstrip('.')}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()[:16]
    return "recruitmail-verification=" + base64.b32encode(digest).decode().rstrip("=").lower()


def mx_instructions(address: str, name: str, value: str, exchanger: str) -> str:
    return (
        f"Mail for {address} goes straight to Recruitmail ({exchanger} is the domain's mail "
        "exchanger), so any sender's mail arrives here and no check message can prove the "
        "address is yours. Prove the domain instead: publish this DNS record, then test again.\n"
        f"- Type TXT, name {name}, value {value}"
    )


def owner_of(session: Session, address: str) -> uuid.UUID | None:
    """The company that proved `address`, or None while nobody has."""
    row = session.get(AddressOwner, key(address))
    return row.company_id if row is not None else None


def held_by_another(session: Session, address: str, company_id: uuid.UUID) -> bool:
    owner = owner_of(session, address)
    return owner is not None and owner != company_id


def claim(session: Session, connection: Connection, at: datetime) -> bool:
    """Record that `connection` proved its address. True when its company owns the address now
    (it did already, or nobody did); False when another company proved it first. A concurrent
    first proof by another company surfaces as an IntegrityError at flush: the caller retries.
    """
    address = key(connection.custom_address)
    row = session.get(AddressOwner, address)
    if row is None:
        session.add(
            AddressOwner(
                address=address,
                company_id=connection.company_id,
                connection_id=connection.id,
                proven_at=at,
            )
        )
        session.flush()
        _disable_unproven_claims(session, connection)
        return True
    if row.company_id != connection.company_id:
        return False
    row.connection_id = connection.id  # the newest proof of the same company
    session.add(row)
    return True


def _disable_unproven_claims(session: Session, owner: Connection) -> None:
    """Another company's live connection for the address, never proven, stops sending as it:
    the address has just been proven to belong to someone else."""
    others = session.exec(
        select(Connection).where(
            func.lower(Connection.custom_address) == key(owner.custom_address),
            Connection.company_id != owner.company_id,
            col(Connection.status).in_(LIVE_STATUSES),
        )
    ).all()
    for other in others:
        before = other.status
        other.status = ConnectionStatus.DISABLED
        other.setup_state = ConnectionStatus.DISABLED
        other.last_error = (
            f"Disabled: another Recruitmail account proved that it owns {other.custom_address} "
            "(its check message came back through the address's own mail routing). Messages "
            "go out from the hosted address again."
        )
        other.updated_at = utcnow()
        session.add(other)
        events.connection_changed(session, other, before, "another account proved the address")


def release(session: Session, connection: Connection) -> None:
    """`connection` was disabled or deleted: if it held its address, the company's newest
    other proof takes over, or the address is free again."""
    row = session.get(AddressOwner, key(connection.custom_address))
    if row is None or row.connection_id != connection.id:
        return
    successor = session.exec(
        select(Connection)
        .where(
            Connection.company_id == connection.company_id,
            func.lower(Connection.custom_address) == key(connection.custom_address),
            Connection.id != connection.id,
            Connection.redirect_status == RedirectStatus.VERIFIED,
            col(Connection.status).not_in(LET_GO),
        )
        .order_by(col(Connection.redirect_checked_at).desc())
    ).first()
    if successor is None:
        session.delete(row)
    else:
        row.connection_id = successor.id
        session.add(row)


def refusal(session: Session, settings: Settings, connection: Connection) -> str | None:
    """A hosted address is never a custom address, and an address another company proved is
    not this company's to test or activate."""
    if is_hosted_domain(settings, connection.custom_address):
        return hosted_refusal(connection.custom_address)
    if held_by_another(session, connection.custom_address, connection.company_id):
        return (
            f"{connection.custom_address} is connected to another Recruitmail account, which "
            "proved it owns the address. It cannot be connected here until that account lets "
            "it go."
        )
    return None


def record_domain_proof(
    session: Session, connection: Connection, published: bool, detail: str
) -> str:
    """The outcome of the domain-record proof (the domain's MX is this platform's receiver):
    the verified detail when the company owns the address now ("" when another company proved
    it first, or without the record, whose instructions are `detail`)."""
    now = utcnow()
    if published and claim(session, connection, now):
        status, detail = (
            RedirectStatus.VERIFIED,
            round_trip.domain_record_detail(connection.custom_address, now),
        )
    elif published:
        status, detail = (
            RedirectStatus.NOT_SEEN,
            round_trip.held_detail(connection.custom_address),
        )
    else:
        status = RedirectStatus.NOT_SEEN
    connection.redirect_status = status
    connection.redirect_checked_at = now
    connection.redirect_detail = detail
    connection.check_token_hash = None
    connection.updated_at = now
    session.add(connection)
    events.redirect_checked(session, connection)
    return detail if status == RedirectStatus.VERIFIED else ""
