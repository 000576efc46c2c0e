"""Shared by the routers: starting a run for rows just written, and the handle on a
connection's setup (api/services/connections.Setup) that the connection routes move.
Company-scoped lookups are the services' (api/services/common.py)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, status
from fastapi.concurrency import run_in_threadpool

from api.deps import SessionDep, SettingsAdmin, SettingsDep, TemporalDep
from api.services import connections
from api.services.connections import Setup

R = TypeVar("R")
log = logging.getLogger(__name__)


async def insert_then_start(
    insert: Callable[[], R],
    start: Callable[[R], Awaitable[object]],
    undo: Callable[[R], None],
    refusal: str,
) -> R:
    """Write rows (`insert` commits them), then start their run (api/runs.py). If
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


async def owned_setup(
    connection_id: str,
    user: SettingsAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> Setup:
    """One of the caller's connections, with what a handler needs to move its setup."""
    connection = await run_in_threadpool(connections.owned, session, user, connection_id)
    return Setup(connection, user, session, settings, temporal)


SetupDep = Annotated[Setup, Depends(owned_setup)]
