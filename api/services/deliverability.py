"""Deliverability through the API: the suppression list (list, add by hand, release; the rules
are core/deliverability/suppression.py's), and the relay's event callbacks.

Mailjet's event callbacks (https://dev.mailjet.com/email/guides/webhooks/): `bounce`,
`blocked` and `spam` events about the platform's messages become suppressions
(core/deliverability/suppression.py); every other event type is ignored.

An event counts only when its `CustomID` is one of our outbound messages (Recruitmail sets it
to the message's id on every Mailjet send) and its `email` is that message's recipient, so a
forged event names nothing it did not send. A bounce or a block marks the message bounced."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from core.db import session_scope
from core.deliverability import suppression
from core.models import Direction, Message, Suppression, User
from core.send import lifecycle
from core.statuses import SuppressionReason

LIST_LIMIT = 1000


def listing(
    session: Session, user: User, address: str | None, reason: SuppressionReason | None
) -> list[Suppression]:
    """The company's suppressed addresses, newest first (at most LIST_LIMIT)."""
    query = select(Suppression).where(Suppression.company_id == user.company_id)
    if address:
        query = query.where(
            Suppression.address_hash == suppression.address_hash(user.company_id, address)
        )
    if reason is not None:
        query = query.where(Suppression.reason == reason.value)
    query = query.order_by(col(Suppression.created_at).desc(), col(Suppression.id)).limit(
        LIST_LIMIT
    )
    return list(session.exec(query).all())


def add(session: Session, user: User, address: str, detail: str) -> Suppression | None:
    """Suppressed by an admin; None when the address is listed already."""
    row = suppression.suppress(
        session,
        user.company_id,
        address,
        SuppressionReason.MANUAL,
        detail.strip(),
        user_id=user.id,
    )
    if row is not None:
        session.commit()
        session.refresh(row)
    return row


def release(session: Session, user: User, address: str) -> Suppression | None:
    row = suppression.release(session, user.company_id, address, user_id=user.id)
    if row is not None:
        session.commit()
    return row


def existing(session: Session, user: User, address: str) -> Suppression | None:
    return suppression.find(session, user.company_id, address)


# -- Mailjet's event callbacks ---------------------------------------------------------------


MAX_EVENTS = 1000  # per callback (Mailjet groups up to a few hundred)
_TAKEN = ("bounce", "blocked", "spam")


def take(engine: Engine, posted: Any, soft_bounce_limit: int) -> int:
    """The callback's events (one object, or a list when Mailjet groups them); how many
    changed anything."""
    items = posted if isinstance(posted, list) else [posted]
    changed = 0
    with session_scope(engine) as session:
        for item in items[:MAX_EVENTS]:
            if not isinstance(item, dict) or item.get("event") not in _TAKEN:
                continue
            message = _message(session, item)
            if message is None:
                continue
            changed += _apply(session, message, item, soft_bounce_limit)
    return changed


def _message(session: Any, item: dict[str, Any]) -> Message | None:
    try:
        message_id = uuid.UUID(str(item.get("CustomID", "")))
    except ValueError:
        return None
    message = session.get(Message, message_id)
    email = str(item.get("email", "")) or None
    if message is None or message.direction != Direction.OUTBOUND or email is None:
        return None
    return message if suppression.reported_recipient(message.to_addresses, email) else None


def _apply(session: Any, message: Message, item: dict[str, Any], limit: int) -> int:
    email = str(item["email"])
    kind = item["event"]
    said = (
        ": ".join(str(item[k]) for k in ("error_related_to", "error") if item.get(k))
        or "no reason given"
    )
    if kind == "spam":
        source = str(item.get("source") or "the recipient's mailbox provider")
        row = suppression.suppress(
            session,
            message.company_id,
            email,
            SuppressionReason.COMPLAINT,
            f"spam report via Mailjet ({source})",
        )
        return int(row is not None)
    permanent = kind == "blocked" or bool(item.get("hard_bounce"))
    detail = (
        f"Mailjet {'blocked the message' if kind == 'blocked' else 'reported a bounce'}: {said}"
    )
    if permanent:
        lifecycle.bounced(session, message, f"The message did not reach {email}: {detail}.")
    suppression.note_bounce(
        session, message.company_id, email, permanent=permanent, detail=detail, limit=limit
    )
    return 1
