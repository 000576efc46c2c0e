"""Request bodies are bounded before anything reads them: before routing, authentication or
parsing. A pure ASGI middleware, outermost, so an oversized body costs at most its limit in
memory and is refused with 413 and a JSON error naming the limit.

Each class of route has its own limit (settings): the JSON API, raw inbound mail, and the
Mailjet webhook (the mail in base64 inside JSON, so larger).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException

from core.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLarge(HTTPException):
    """Raised from `receive` once a streamed body passes its limit; FastAPI passes an
    HTTPException through its body parsing, so the answer is this 413, not a 400."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes ({setting}).")


def limit_for(settings: Settings, path: str) -> tuple[int, str]:
    """The byte limit of a path's request bodies, and what to call it in the refusal."""
    if path == "/inbound/mailjet":
        return settings.max_webhook_bytes, "RECRUITMAIL_MAX_WEBHOOK_BYTES"
    if path in ("/inbound/graph/notifications", "/inbound/gmail/push"):
        return 256 * 1024, "the notification limit (256 KiB)"
    if path == "/inbound/raw":
        return settings.inbound_max_message_bytes, "RECRUITMAIL_INBOUND_MAX_MESSAGE_BYTES"
    if path == "/v1/attachments":  # the file, and the multipart form's own few lines
        return settings.max_attachment_bytes + 64 * 1024, "RECRUITMAIL_MAX_ATTACHMENT_BYTES"
    return settings.max_request_bytes, "RECRUITMAIL_MAX_REQUEST_BYTES"


class BodyLimit:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = limit_for(self.settings, scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit, setting)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit, setting)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await _refuse(send, limit, setting)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: int, setting: str) -> None:
    body = json.dumps(
        {
            "detail": f"The request body is larger than {limit} bytes ({setting}).",
            "errors": [{"field": "body", "message": f"larger than {limit} bytes"}],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
