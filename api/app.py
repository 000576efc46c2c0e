"""The FastAPI app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from sqlalchemy import Engine
from temporalio.client import Client

from api import errors
from api.deps import TemporalGateway
from api.routers import (
    audit,
    bulk,
    candidates,
    codec,
    connections,
    dev,
    health,
    inbound,
    legal_entities,
    mail_settings,
    messages,
    oauth,
)
from core.db import make_engine
from core.logs import new_request_id, request_id_var
from core.settings import Settings, get_settings


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

    @app.middleware("http")
    async def request_id(request: Request, call_next):
        """Every request gets an id (the caller's X-Request-ID, or a new one), logged and echoed."""
        value = new_request_id(request.headers.get("x-request-id"))
        # Each request runs in its own task and context, so the id also reaches the access
        # log line that uvicorn writes after this returns; no reset needed.
        request_id_var.set(value)
        response = await call_next(request)
        response.headers["X-Request-ID"] = value
        return response

    for module in (
        health,
        mail_settings,
        legal_entities,
        candidates,
        messages,
        connections,
        inbound,
        oauth,
        codec,
        audit,
        bulk,
    ):
        app.include_router(module.router)
    if settings.is_development:
        app.include_router(dev.router)
    return app
