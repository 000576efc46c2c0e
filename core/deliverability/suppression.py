"""A company's suppression list: the addresses it does not mail, and why.

An address goes on the list by a hard bounce (a permanent delivery status), by repeated soft
bounces (`soft_bounce_limit` deliveries given up after retrying within 7 days), by a spam
complaint, or by an admin. A single send to a listed address is refused before any attempt
and ends `failed` with the reason; a bulk send leaves the recipient out (`skipped`). Releasing
an address (DELETE /v1/suppressions/{address}) lets mail go to it again.

Rows are found by `address_hash`, the SHA-256 of the company's id and the address: the
company's id salts it, so the same address hashes differently in each company. Erasing a
candidate keeps the hash and clears the address, so an erased candidate stays unmailed
without their address being kept (docs/privacy.md).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from core import audit, events
from core.events import EventType
from core.models import AuditEvent, Event, SoftBounce, Suppression, utcnow
from core.privacy import scrub_detail
from core.statuses import SuppressionReason

SOFT_BOUNCE_WINDOW = timedelta(days=7)

_REASONS = {
    SuppressionReason.HARD_BOUNCE: "its mail server refused mail for it permanently",
    SuppressionReason.COMPLAINT: "its owner reported our mail as spam",
    SuppressionReason.SOFT_BOUNCES: "deliveries to it kept failing",
    SuppressionReason.UNSUBSCRIBED: "its owner unsubscribed from bulk mail",
    SuppressionReason.MANUAL: "an admin added it",
}


def normalized(address: str) -> str:
    """The form the list compares: trimmed and lower-cased (providers treat the local part
    without case, and a bounce's recipient may be written either way)."""
    return address.strip().lower()


def address_hash(company_id: uuid.UUID, address: str) -> str:
    return hashlib.sha256(f"{company_id}:{normalized(address)}".encode()).hexdigest()


def find(session: Session, company_id: uuid.UUID, address: str) -> Suppression | None:
    return session.exec(
        select(Suppression).where(
            Suppression.company_id == company_id,
            Suppression.address_hash == address_hash(company_id, address),
        )
    ).first()


def listed(
    session: Session, company_id: uuid.UUID, addresses: Iterable[str]
) -> dict[str, Suppression]:
    """The listed ones among `addresses`, by normalized address (one query per 500)."""
    by_hash = {address_hash(company_id, a): normalized(a) for a in addresses}
    found: dict[str, Suppression] = {}
    hashes = list(by_hash)
    for start in range(0, len(hashes), 500):
        for row in session.exec(
            select(Suppression).where(
                Suppression.company_id == company_id,
                col(Suppression.address_hash).in_(hashes[start : start + 500]),
            )
        ):
            found[by_hash[row.address_hash]] = row
    return found


def suppress(
    session: Session,
    company_id: uuid.UUID,
    address: str,
    reason: SuppressionReason,
    detail: str = "",
    *,
    user_id: uuid.UUID | None = None,
    at: datetime | None = None,
) -> Suppression | None:
    """Put `address` on the list (None when it is there already: the first reason stands),
    with a suppression.added event in the same transaction."""
    if find(session, company_id, address) is not None:
        return None
    row = Suppression(
        company_id=company_id,
        address=normalized(address),
        address_hash=address_hash(company_id, address),
        reason=reason.value,
        detail=detail[:2000],
        created_by_user_id=user_id,
        created_at=at or utcnow(),
    )
    session.add(row)
    # Everyone gets a mail system's diagnostic (addresses masked); an admin's note is free
    # text that may name people, so only endpoints that take personal data get it.
    manual = reason == SuppressionReason.MANUAL
    events.emit(
        session,
        company_id,
        EventType.SUPPRESSION_ADDED,
        {
            "reason": row.reason,
            "detail": None if manual else events.scrub(row.detail),
            "suppression_id": str(row.id),
        },
        personal={"address": row.address, **({"detail": row.detail} if manual else {})},
    )
    if user_id is not None:
        audit.record(
            session,
            company_id=company_id,
            user_id=user_id,
            action="suppression.add",
            target=f"suppression:{row.id}",
            address=row.address,
            reason=row.reason,
        )
    return row


def release(
    session: Session, company_id: uuid.UUID, address: str, *, user_id: uuid.UUID | None
) -> Suppression | None:
    """Take `address` off the list (None when it was not on it), with an audit line and a
    suppression.released event; its soft bounces are forgotten with it."""
    row = find(session, company_id, address)
    if row is None:
        return None
    session.delete(row)
    session.execute(
        delete(SoftBounce).where(
            col(SoftBounce.company_id) == company_id,
            col(SoftBounce.address_hash) == row.address_hash,
        )
    )
    events.emit(
        session,
        company_id,
        EventType.SUPPRESSION_RELEASED,
        {"reason": row.reason, "suppression_id": str(row.id)},
        personal={"address": row.address or normalized(address)},
    )
    audit.record(
        session,
        company_id=company_id,
        user_id=user_id,
        action="suppression.release",
        target=f"suppression:{row.id}",
        address=row.address or normalized(address),
        reason=row.reason,
    )
    return row


def reported_recipient(to_addresses: list[str], reported: str | None) -> str | None:
    """Whom a report (a bounce, a complaint, a provider's event) about one of our messages
    counts for: the address it names when the message went to it, or the message's only
    recipient when it names none. A report naming someone else counts for nobody."""
    recipients = [a.lower() for a in to_addresses]
    who = reported or (recipients[0] if len(recipients) == 1 else None)
    return who if who is not None and who.lower() in recipients else None


def note_bounce(
    session: Session,
    company_id: uuid.UUID,
    address: str,
    *,
    permanent: bool,
    detail: str,
    limit: int,
    at: datetime | None = None,
) -> Suppression | None:
    """A bounce to `address`: a permanent one suppresses it; a soft one counts, and the
    `limit`-th within 7 days suppresses it. The suppression, when this bounce made one."""
    now = at or utcnow()
    if permanent:
        return suppress(session, company_id, address, SuppressionReason.HARD_BOUNCE, detail, at=now)
    hashed = address_hash(company_id, address)
    session.add(SoftBounce(company_id=company_id, address_hash=hashed, created_at=now))
    session.flush()
    recent = session.exec(
        select(func.count())
        .select_from(SoftBounce)
        .where(
            SoftBounce.company_id == company_id,
            SoftBounce.address_hash == hashed,
            col(SoftBounce.created_at) > now - SOFT_BOUNCE_WINDOW,
        )
    ).one()
    if recent < limit:
        return None
    return suppress(
        session,
        company_id,
        address,
        SuppressionReason.SOFT_BOUNCES,
        f"{recent} deliveries given up within 7 days; the last: {detail}",
        at=now,
    )


def forget_address(session: Session, company_id: uuid.UUID, address: str) -> None:
    """An erased candidate's address: a listed row keeps its hash (still suppressed), not the
    address or a detail that may quote it; the list's events and audit lines about it, listed
    or released, forget it too."""
    if not address:
        return
    plain = normalized(address)
    row = find(session, company_id, address)
    if row is not None:
        row.address = None
        row.detail = events.scrub(row.detail) or ""
        session.add(row)
    for event in session.exec(
        select(Event).where(
            Event.company_id == company_id,
            col(Event.type).in_(
                [EventType.SUPPRESSION_ADDED.value, EventType.SUPPRESSION_RELEASED.value]
            ),
        )
    ):
        if (event.personal or {}).get("address") == plain:
            event.personal = None
            event.data = {**event.data, "detail": events.scrub(event.data.get("detail"))}
            session.add(event)
    for line in session.exec(
        select(AuditEvent).where(
            AuditEvent.company_id == company_id,
            col(AuditEvent.action).in_(["suppression.add", "suppression.release"]),
        )
    ):
        if line.detail.get("address") == plain:
            line.detail = scrub_detail(line.detail)
            session.add(line)


def explain(row: Suppression) -> str:
    """Why mail to a listed address is not sent, and how to release it, in words a recruiter
    can act on. It names no address (it is recorded in the run's history and in events)."""
    when = row.created_at.strftime("%d %b %Y %H:%M UTC")
    if row.reason == SuppressionReason.UNSUBSCRIBED:
        return (
            f"Not sent (opted_out): the candidate unsubscribed from your bulk mail on {when}. "
            "Single messages about their application still go; they can subscribe again from "
            "the unsubscribe link of any bulk message."
        )
    text = (
        f"Not sent: the candidate's address is on your suppression list since {when}: "
        f"{_REASONS[SuppressionReason(row.reason)]}"
    )
    # A mail system's diagnostic, addresses masked; never an admin's note (free text, which
    # may name people, and this reason goes into the run's history and events).
    if row.detail and row.reason != SuppressionReason.MANUAL:
        text += f" ({events.scrub(row.detail)})"
    return (
        text + ". Once the address works again, or the candidate asks for mail, an admin can "
        "release it (DELETE /v1/suppressions/{address}) and send again."
    )
