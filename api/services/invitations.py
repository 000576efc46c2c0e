"""An interview invitation on a single send: its calendar identity planned in the send's
transaction (core/compose/invitations.py), a clear 422 when it cannot be."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import HTTPException, status
from sqlmodel import Session

from api.schemas import InvitationRequest
from core.compose import invitations
from core.models import Candidate
from core.settings import Settings


def plan(
    session: Session,
    settings: Settings,
    company_id: uuid.UUID,
    candidate: Candidate,
    message_id: uuid.UUID,
    request: InvitationRequest,
) -> dict[str, Any]:
    try:
        return invitations.plan(
            session,
            company_id=company_id,
            candidate_id=candidate.id,
            message_id=message_id,
            domain=settings.platform_mail_domain,
            **request.model_dump(),
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
