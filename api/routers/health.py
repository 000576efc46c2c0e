from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from api.services.health import database_answers
from core.temporal import TemporalSettingsError, TemporalTlsRefused

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers and Temporal's namespace is reachable."""
    checks: dict[str, str] = {}
    try:
        await asyncio.to_thread(database_answers, request.app.state.engine)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        client = await asyncio.wait_for(request.app.state.temporal.client(), timeout=15)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=client.namespace), timeout=timedelta(seconds=5)
        )
        checks["temporal"] = "ok"
    except TemporalTlsRefused:
        checks["temporal"] = "tls_refused"  # it answered, but refused our TLS or credentials
    except TemporalSettingsError:
        checks["temporal"] = "misconfigured"
    except Exception:
        checks["temporal"] = "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(status_code=200 if ready else 503, content={"ready": ready, **checks})
