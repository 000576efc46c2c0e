"""HTTP clients for the OAuth providers' libraries and mail APIs, with one trust store for all.

`requests` (used by msal and google-auth-oauthlib) verifies against one CA file, and honours
REQUESTS_CA_BUNDLE from the environment unless `trust_env` is off. So sessions here turn
`trust_env` off and verify against certifi's store plus RECRUITMAIL_CA_BUNDLE, combined once.
"""

from __future__ import annotations

import hashlib
import tempfile
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

import certifi
import httpx
import requests

from core.errors import AuthExpiredError, PermanentMailError, TransientMailError
from core.settings import Settings
from core.tls import client_tls_context


@lru_cache
def _combined_bundle(extra: str) -> str:
    pem = Path(certifi.where()).read_bytes() + b"\n" + Path(extra).read_bytes()
    digest = hashlib.sha256(pem).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"recruitmail-ca-{digest}.pem"
    if not path.exists():
        path.write_bytes(pem)
    return str(path)


def requests_session(settings: Settings) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE and proxies from the environment stay out
    session.verify = _combined_bundle(str(settings.ca_bundle)) if settings.ca_bundle else True
    return session


def api_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=client_tls_context(settings.ca_bundle),
        timeout=settings.oauth_http_timeout_seconds,
        trust_env=False,
    )


def retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("retry-after", "")
    return timedelta(seconds=int(value)) if value.isdigit() else None


def classify_api_answer(response: httpx.Response, provider: str, address: str) -> None:
    """Raise the MailError a mail API's refusal means; return on success."""
    if response.status_code < 300:
        return
    detail = _error_text(response)
    if response.status_code == 429 or response.status_code >= 500:
        wait = retry_after(response)
        when = f" in {int(wait.total_seconds())} s" if wait else ""
        raise TransientMailError(
            f"{provider} is throttling or unavailable ({response.status_code}); retrying{when}.",
            retry_after=wait,
        )
    if response.status_code == 401:
        raise AuthExpiredError(f"{provider} no longer accepts the mailbox's sign-in ({detail}).")
    if response.status_code == 403:
        raise PermanentMailError(
            f"{provider} does not allow {address} to send this message ({detail})."
        )
    raise PermanentMailError(f"{provider} refused the message ({response.status_code}: {detail}).")


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        if code and message and str(code) not in str(message):
            return f"{code}: {message}"[:300]
        return str(message or code or error)[:300]
    return str(error or body)[:300]
