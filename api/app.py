"""The FastAPI app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from sqlalchemy import Engine
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

from api import errors
from api.deps import TemporalGateway
from api.limits import BodyLimit
from api.metrics import Metrics, RequestMetrics
from api.rendering import STATIC_DIR
from api.routers import (
    attachments,
    audit,
    bulk,
    candidates,
    codec,
    connections,
    deliverability,
    dev,
    erasures,
    events,
    health,
    inbound,
    inbound_paths,
    legal_entities,
    mail_settings,
    messages,
    oauth,
    pages,
    privacy,
    retention_page,
    send,
    templates,
    unsubscribe_page,
    webhooks,
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
        docs_url=None,  # served below from the app's own files, not from a CDN
        redoc_url=None,
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
        send,
        connections,
        inbound_paths,
        inbound,
        oauth,
        codec,
        audit,
        bulk,
        templates,
        attachments,
        events,
        webhooks,
        privacy,
        erasures,
        deliverability,
        unsubscribe_page,
        retention_page,
        pages,
    ):
        app.include_router(module.router)
    offline_docs(app)
    if settings.is_development:
        app.include_router(dev.router)
    # Request spans, exported only when RECRUITMAIL_OTLP_ENDPOINT is set (core/tracing.py).
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    metrics = Metrics(app.state.engine)
    app.add_api_route("/metrics", metrics.response, methods=["GET"], include_in_schema=False)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(RequestId)
    # Outermost: bodies are bounded before routing, authentication or parsing reads them.
    app.add_middleware(BodyLimit, settings=settings)
    return app


# Swagger UI and ReDoc as the fastapi-offline package ships them (kept current by its releases):
# the docs work on networks that block CDNs, and on air-gapped deployments.
DOCS_STATIC_DIR = Path(fastapi_offline.__file__).parent / "static"


# Nothing but this origin, even by accident: ReDoc's sidebar would fetch its logo from a CDN.
DOCS_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; font-src 'self' data:"
    )
}


def offline_docs(app: FastAPI) -> None:
    app.mount("/static/docs", StaticFiles(directory=DOCS_STATIC_DIR), name="docs-static")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    title = f"{app.title} API"

    async def swagger_ui() -> HTMLResponse:
        return _with_docs_headers(
            get_swagger_ui_html(
                openapi_url="/openapi.json",
                title=title,
                swagger_js_url="/static/docs/swagger-ui-bundle.js",
                swagger_css_url="/static/docs/swagger-ui.css",
                swagger_favicon_url="/static/favicon.svg",
            )
        )

    async def redoc() -> HTMLResponse:
        return _with_docs_headers(
            get_redoc_html(
                openapi_url="/openapi.json",
                title=title,
                redoc_js_url="/static/docs/redoc.standalone.js",
                redoc_favicon_url="/static/favicon.svg",
                with_google_fonts=False,
            )
        )

    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)


def _with_docs_headers(response: HTMLResponse) -> HTMLResponse:
    response.headers.update(DOCS_HEADERS)
    return response


class RequestId:
    """Every request gets an id (the caller's X-Request-ID, or a new one), logged and echoed.

    Pure ASGI (not BaseHTTPMiddleware): errors raised while the body is read reach FastAPI as
    they are, not wrapped in a task group's ExceptionGroup."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id")
        value = new_request_id(given)
        # Each request runs in its own task and context, so the id also reaches the access
        # log line that uvicorn writes after this returns; no reset needed.
        request_id_var.set(value)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("X-Request-ID", value)
            await send(message)

        await self.app(scope, receive, send_with_id)
