"""The suppression list through the API: list, add by hand, release (the rules are
core/deliverability/suppression.py's)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from core.deliverability import suppression
from core.models import Suppression, User
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
