"""Error answers: always {"detail": "..."}, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from core.errors import Conflict, NotFound, Refused, StillRunning, TooLarge

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


# The domain's refusals (core/errors.py), each mapped to its status here and nowhere else.
_STATUS: dict[type[Refused], int] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    TooLarge: status.HTTP_413_CONTENT_TOO_LARGE,
    StillRunning: status.HTTP_504_GATEWAY_TIMEOUT,
    Refused: status.HTTP_422_UNPROCESSABLE_CONTENT,
}


def status_for(exc: Refused) -> int:
    return next(code for kind, code in _STATUS.items() if isinstance(exc, kind))


async def refused(request: Request, exc: Refused) -> JSONResponse:
    return JSONResponse(status_code=status_for(exc), content={"detail": exc.detail, **exc.extra})


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        content={"detail": "Internal error. It has been logged; please try again."},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Refused, refused)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected_error)
    app.openapi = lambda: openapi(app)  # type: ignore[method-assign]


class ErrorItem(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    """Every error answer: `detail` says what is wrong in words; for invalid input, `errors`
    names each field."""

    detail: str
    errors: list[ErrorItem] = []


# The error answers any operation may give, declared on all of them with the one model.
ERRORS = {
    400: "The request is malformed.",
    401: "No valid token (Authorization: Bearer …), or no webhook secret.",
    403: "The token's user lacks the permission this needs.",
    404: "Not found, or not the caller's company's.",
    409: "The request conflicts with the current state; `detail` says what to do next.",
    413: "The request body is larger than its limit.",
    422: "Invalid input; `errors` names each field.",
    503: "The workflow service is briefly unavailable; nothing was written. Try again.",
    504: "The operation is still running; follow it through the resource.",
}


_JSON_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
# The pages a person opens in a browser answer errors as pages too.
_HTML_ERROR = {"text/html": {"schema": {"type": "string"}}}


def openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the truth about errors: our ErrorResponse, not its array."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    definitions = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(definitions.pop("$defs", {}))
    components["ErrorResponse"] = definitions
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            html = any("text/html" in r.get("content", {}) for r in responses.values())
            for code, description in ERRORS.items():
                content = (
                    {"text/html": {"schema": {"type": "string"}}}
                    if html
                    else {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ErrorResponse"}
                        }
                    }
                )
                responses[str(code)] = {"description": description, "content": content}
    app.openapi_schema = schema
    return schema
