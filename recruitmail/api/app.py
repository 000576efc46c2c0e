"""The FastAPI app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine
from temporalio.client import Client

from recruitmail.api import errors
from recruitmail.api.deps import TemporalGateway
from recruitmail.api.routers import (
    candidates,
    connections,
    dev,
    health,
    inbound,
    legal_entities,
    mail_settings,
    messages,
    oauth,
)
from recruitmail.core.db import make_engine
from recruitmail.core.settings import Settings, get_settings


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    temporal_client: Client | None = None,
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if engine is None:
            app.state.engine.dispose()

    app = FastAPI(
        title="Recruitmail",
        version="0.1.0",
        description="The email layer of a recruiting platform.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine or make_engine(settings.effective_database_url)
    app.state.temporal = TemporalGateway(settings, temporal_client)
    errors.install(app)
    for module in (
        health,
        mail_settings,
        legal_entities,
        candidates,
        messages,
        connections,
        inbound,
        oauth,
    ):
        app.include_router(module.router)
    if settings.is_development:
        app.include_router(dev.router)
    return app
