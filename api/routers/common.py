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
from core.models import LegalEntity

T = TypeVar("T", bound=SQLModel)
R = TypeVar("R")
log = logging.getLogger(__name__)


def get_owned(
    session: Session, model: type[T], raw_id: str | uuid.UUID, company_id: uuid.UUID, what: str
) -> T:
    object_id = raw_id if isinstance(raw_id, uuid.UUID) else parse_id(raw_id, what)
    row = session.get(model, object_id)
    if row is None or row.company_id != company_id:  # type: ignore[attr-defined]
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")
    return row


def check_entity(
    session: Session, company_id: uuid.UUID, legal_entity_id: uuid.UUID | None
) -> None:
    if legal_entity_id is None:
        return
    entity = session.get(LegalEntity, legal_entity_id)
    if entity is None or entity.company_id != company_id:
        raise HTTPException(
            422,
            "legal_entity_id: no such legal entity in your company",
        )


async def insert_then_start(
    insert: Callable[[], R],
    start: Callable[[R], Awaitable[object]],
    undo: Callable[[R], None],
    refusal: str,
) -> R:
    """Write rows (`insert` commits them), then start their run (workflows/client.py). If
    Temporal cannot take it, remove the rows again (nothing half-written: without a run they
    would never move) and answer 503. A run that already exists is our own retried start."""
    row = await run_in_threadpool(insert)
    try:
        await start(row)
    except Exception as exc:
        log.exception("could not start the run: %s", refusal)
        await run_in_threadpool(undo, row)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"{refusal}: the workflow service is unavailable. Try again shortly.",
        ) from exc
    return row
