"""Provider notifications that wake mailbox sync, checked before anything is believed.

- Gmail's Pub/Sub push carries an OIDC token (a JWT signed by Google) in its Authorization
  header: verified with google-auth against Google's certificates (fetched once and kept for
  their Cache-Control max-age), for our audience, from the push subscription's service
  account. Its body names only the mailbox and a history id.
- Graph's change notifications carry the clientState we gave the subscription (checked by
  api/services/inbound_paths.py); its validation handshake echoes a token.

Neither is ever trusted with mail: a notification only wakes the sync run, which reads the
mailbox through its own sign-in.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import google.auth.exceptions
import httpx
from google.auth import jwt

from core.settings import Settings
from core.tls import client_tls_context

ISSUERS = ("accounts.google.com", "https://accounts.google.com")
# Graph's validation token: echoed as text/plain; anything else is refused.
VALIDATION_TOKEN_RE = re.compile(r"^[\x21-\x7e ]{1,1024}$")
_CERTS_TTL_DEFAULT = 3600.0
_lock = threading.Lock()
_certs: dict[str, tuple[float, dict[str, Any]]] = {}


class PushRefused(Exception):
    """Not a push from Gmail's Pub/Sub subscription; the reason is for the log, not the
    caller."""


@dataclass(frozen=True)
class GmailPush:
    mailbox: str
    history_id: str


def _max_age(cache_control: str) -> float:
    found = re.search(r"max-age=(\d{1,7})", cache_control or "")
    return float(found.group(1)) if found else _CERTS_TTL_DEFAULT


def certificates(settings: Settings, *, refresh: bool = False) -> dict[str, Any]:
    """Google's signing certificates (kid -> PEM, or a JWK set), cached per URL."""
    url = settings.google_certs_url
    with _lock:
        cached = _certs.get(url)
        if cached and cached[0] > time.monotonic() and not refresh:
            return cached[1]
    with httpx.Client(
        verify=client_tls_context(settings.ca_bundle), timeout=10, trust_env=False
    ) as client:
        response = client.get(url)
    response.raise_for_status()
    certs: dict[str, Any] = response.json()
    expires = time.monotonic() + _max_age(response.headers.get("cache-control", ""))
    with _lock:
        _certs[url] = (expires, certs)
    return certs


def verify_gmail_push(settings: Settings, authorization: str, body: bytes) -> GmailPush:
    """The mailbox a genuine push is about; PushRefused otherwise."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or len(token) > 8192:
        raise PushRefused("no bearer token")
    audience = settings.gmail_push_audience or settings.gmail_push_url()
    try:
        claims = _decode(settings, token.strip(), audience)
    except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        raise PushRefused(f"token: {type(exc).__name__}") from None
    except httpx.HTTPError as exc:
        raise PushRefused(f"certificates unavailable: {type(exc).__name__}") from None
    if claims.get("iss") not in ISSUERS:
        raise PushRefused("issuer")
    expected = settings.gmail_push_service_account.lower()
    if expected and (
        str(claims.get("email", "")).lower() != expected or claims.get("email_verified") is not True
    ):
        raise PushRefused("service account")
    try:
        envelope = json.loads(body)
        data = json.loads(base64.b64decode(envelope["message"]["data"], validate=True))
        mailbox = str(data["emailAddress"])[:320]
        history = str(data.get("historyId", ""))[:40]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise PushRefused(f"body: {type(exc).__name__}") from None
    return GmailPush(mailbox, history)


def _decode(settings: Settings, token: str, audience: str) -> dict[str, Any]:
    try:
        return dict(jwt.decode(token, certs=certificates(settings), audience=audience))  # type: ignore[no-untyped-call]
    except ValueError as exc:
        if "certificate" not in str(exc).lower() and "kid" not in str(exc).lower():
            raise
        # A key Google rotated in since the certificates were fetched: fetch them again.
        fresh = certificates(settings, refresh=True)
        return dict(jwt.decode(token, certs=fresh, audience=audience))  # type: ignore[no-untyped-call]
