"""The suppression list: addresses the company does not mail (docs/deliverability.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.concurrency import run_in_threadpool

from api.deps import CurrentUser, SessionDep, SettingsAdmin
from api.schemas import SuppressionCreate, SuppressionPublic
from api.services import deliverability as service
from core.mail import normalize_address
from core.models import Suppression
from core.statuses import SuppressionReason

router = APIRouter(prefix="/v1/suppressions", tags=["suppressions"])


@router.get("", response_model=list[SuppressionPublic])
async def list_suppressions(
    user: CurrentUser,
    session: SessionDep,
    address: Annotated[str | None, Query(max_length=320)] = None,
    reason: SuppressionReason | None = None,
) -> list[Suppression]:
    """The company's suppressed addresses, newest first (at most 1,000), by address or by
    reason: hard_bounce, complaint, soft_bounces, unsubscribed or manual."""
    return await run_in_threadpool(service.listing, session, user, address, reason)


@router.post("", response_model=SuppressionPublic, status_code=status.HTTP_201_CREATED)
async def add_suppression(
    body: SuppressionCreate, user: SettingsAdmin, session: SessionDep
) -> Suppression:
    """Stop all mail to an address (single sends fail with the reason, bulk sends skip it)."""
    row = await run_in_threadpool(service.add, session, user, body.address, body.detail)
    if row is None:
        found = await run_in_threadpool(service.existing, session, user, body.address)
        reason = found.reason if found is not None else "listed"
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"{body.address} is on your suppression list already ({reason}).",
        )
    return row


@router.delete("/{address}", status_code=status.HTTP_204_NO_CONTENT)
async def release_suppression(address: str, user: SettingsAdmin, session: SessionDep) -> Response:
    """Release an address: mail goes to it again (an audit line and suppression.released)."""
    try:
        address = normalize_address(address)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"address: {exc}") from None
    row = await run_in_threadpool(service.release, session, user, address)
    if row is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"{address} is not on your suppression list."
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
