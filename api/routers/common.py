"""Shared by the routers: company-scoped lookups (anything outside the caller's company is
simply not found), and starting a run for rows just written."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import HTTPException, status
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session, SQLModel

from api.deps import parse_id

T = TypeVar("T", bound=SQLModel)
log = logging.getLogger(__name__)


def get_owned(
    session: Session, model: type[T], raw_id: str | uuid.UUID, company_id: uuid.UUID, what: str
) -> T:
    object_id = raw_id if isinstance(raw_id, uuid.UUID) else parse_id(raw_id, what)
    row = session.get(model, object_id)
    if row is None or row.company_id != company_id:  # type: ignore[attr-defined]
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")
    return row


async def start_or_undo(
    start: Awaitable[bool], undo: Callable[[], None], refusal: str, workflow_id: str
) -> None:
    """Start the run for rows just written (workflows.client.start_run). If Temporal cannot
    take it, remove the rows (nothing half-written: without a run they would never move) and
    answer 503. A run that already exists is our own retried start: nothing to do."""
    try:
        await start
    except Exception as exc:
        log.exception("could not start %s", workflow_id)
        await run_in_threadpool(undo)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"{refusal}: the workflow service is unavailable. Try again shortly.",
        ) from exc
