"""Server-rendered pages for people in a browser: Jinja2 templates in api/templates/, one
stylesheet and one small script in api/static/, no build step.

A connection's status page is bound to the setup, not to a single-use sign-in state: its link
carries a signed page key (`page_key`), good for as long as a setup can wait, so a reload or a
forwarded link keeps working while the setup waits.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from core.models import Connection
from core.security import secret_box
from core.settings import Settings

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")

# The pages carry no third-party code: scripts, styles and images come from this origin only.
# The status page's URL holds its key, so no Referer leaves it.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
}
PAGE_PURPOSE = "page"


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, {"version": request.app.version, **context}, status_code, PAGE_HEADERS
    )


def error_page(
    request: Request,
    title: str,
    reason: str,
    next_step: str,
    status_code: int = 400,
    back: str | None = None,
) -> HTMLResponse:
    """Something a person opened cannot be used: what happened, and what to do instead."""
    return render(
        request,
        "message.html",
        status_code,
        title=title,
        tone="error",
        lead=reason,
        next_step=next_step,
        back=back or back_link(request.app.state.settings, None),
    )


def _window(settings: Settings) -> float:
    # As long as any setup can wait for a sign-in, an administrator and an activation.
    longest = settings.oauth_signin_wait + settings.oauth_admin_consent_wait
    return longest.total_seconds() + 8 * 86400


def page_key(settings: Settings, connection: Connection) -> str:
    """The same key for a connection all through a setup, so its page has one stable address.

    Keys are issued per window (the longest a setup can wait), counted from the connection's
    creation, and each is valid for two windows: a key is good for at least one whole setup
    after it is issued, a reconnect months later included."""
    window = _window(settings)
    created = connection.created_at.replace(tzinfo=connection.created_at.tzinfo or UTC)
    start = created.timestamp()
    since = start + ((max(0.0, time.time() - start)) // window) * window
    claims = {"c": str(connection.id), "p": PAGE_PURPOSE}
    return secret_box(settings).sign(claims, 2 * window, since=since)


def page_key_valid(settings: Settings, connection_id: uuid.UUID, key: str) -> bool:
    try:
        claims = secret_box(settings).verify(key)
    except ValueError:
        return False
    return claims.get("p") == PAGE_PURPOSE and claims.get("c") == str(connection_id)


def status_page_url(settings: Settings, connection: Connection) -> str:
    base = settings.public_url.rstrip("/")
    return f"{base}/setup/{connection.id}?{urlencode({'key': page_key(settings, connection)})}"


def back_link(settings: Settings, connection: Connection | None) -> str:
    """Where "Return to Recruitmail" leads: the product (RECRUITMAIL_APP_URL) with the
    connection id, or else this API's own status page for the connection."""
    if connection is None:
        return settings.app_url or "/"
    return settings.app_link(str(connection.id)) or status_page_url(settings, connection)
