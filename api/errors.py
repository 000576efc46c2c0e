"""Error answers: always {"detail": "..."}, never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "request"


def _message(error: dict) -> str:
    msg = error.get("msg", "is invalid")
    # Our own validators raise ValueError; pydantic prefixes those with "Value error, ".
    return msg.removeprefix("Value error, ")


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"field": _field(e["loc"]), "message": _message(e)} for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse(
        status_code=422,
        content={"detail": detail, "errors": errors},
    )


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        content={"detail": "Internal error. It has been logged; please try again."},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected_error)
