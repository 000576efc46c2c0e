"""The Temporal codec server: the UI and `temporal workflow show --codec-endpoint` send
encrypted payloads here and get them back decoded, if the caller is an operator.

Two ways to authenticate:
- `Authorization: Bearer <operator token>` (the CLI: `--codec-auth "Bearer rm_…"`);
- the token in the path, `/codec/t/<operator token>/decode`, for the Temporal UI, which calls a
  fixed endpoint from the browser and cannot add our header. The access log redacts it.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from google.protobuf.json_format import MessageToJson, Parse, ParseError
from temporalio.api.common.v1 import Payloads

from api.deps import Operator
from api.services import codec as codec_service
from core.codec import EncryptionCodec

router = APIRouter(tags=["codec"])

_CORS = {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "content-type, x-namespace, authorization",
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Max-Age": "600",
    "Vary": "Origin",
}


def _cors(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin")
    allowed = request.app.state.settings.allowed_codec_origins()
    if origin and origin in allowed:
        return {"Access-Control-Allow-Origin": origin, **_CORS}
    return {}


def _codec(request: Request) -> EncryptionCodec:
    return EncryptionCodec(request.app.state.settings.secret_key_ring())


async def _transform(request: Request, action: str) -> Response:
    try:
        payloads = Parse(await request.body(), Payloads())
    except (ParseError, UnicodeDecodeError) as exc:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"The body is not a Payloads message: {exc}"
        ) from None
    codec = _codec(request)
    try:
        if action == "decode":
            result = await codec.decode(payloads.payloads)
        else:
            result = await codec.encode(payloads.payloads)
    except Exception as exc:  # a payload from another key ring, or tampered ciphertext
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"A payload could not be {action}d: {exc}"
        ) from None
    return Response(
        MessageToJson(Payloads(payloads=result)),
        media_type="application/json",
        headers=_cors(request),
    )


# CORS preflights of the UI: not part of the API a client calls.
@router.options("/codec/{action}", include_in_schema=False)
@router.options("/codec/t/{token}/{action}", include_in_schema=False)
async def preflight(request: Request) -> Response:
    return Response(status_code=204, headers=_cors(request))


@router.post("/codec/{action}")
async def codec_with_header(action: str, request: Request, user: Operator) -> Response:
    if action not in ("encode", "decode"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not found")
    return await _transform(request, action)


@router.post("/codec/t/{token}/{action}")
async def codec_with_path_token(action: str, token: str, request: Request) -> Response:
    if action not in ("encode", "decode"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not found")
    settings = request.app.state.settings
    ui_token = settings.ui_codec_token if action == "decode" else ""
    if not await run_in_threadpool(
        codec_service.operator, request.app.state.engine, token, ui_token
    ):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "The codec needs an operator token.",
            headers=_cors(request),
        )
    return await _transform(request, action)
