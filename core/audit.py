"""Audit events: who changed which setting, when. One helper for every place that records one.

Details never hold a secret: callers pass addresses, ids and statuses only.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import Session

from core.models import AuditEvent, Connection


def record(
    session: Session,
    *,
    company_id: uuid.UUID,
    user_id: uuid.UUID | None,
    action: str,
    target: str,
    **detail: Any,
) -> AuditEvent:
    """Add the event to the session; it commits with the change it describes."""
    event = AuditEvent(
        company_id=company_id, user_id=user_id, action=action, target=target, detail=detail
    )
    session.add(event)
    return event


def record_connection(
    session: Session, connection: Connection, user_id: uuid.UUID | None, action: str, **detail: Any
) -> AuditEvent:
    """An event about a connection: its target and custom address are always named."""
    return record(
        session,
        company_id=connection.company_id,
        user_id=user_id,
        action=action,
        target=f"connection:{connection.id}",
        custom_address=connection.custom_address,
        **detail,
    )
