"""One HTTP base for the providers that speak HTTP (Mailjet, Microsoft Graph, Gmail), as
django-anymail has `base_requests`: one client factory, one `Retry-After` parser, one mapping of
HTTP answers to transient and permanent errors.

Clients are pooled per provider, so consecutive sends reuse their connections. Every client
trusts one store (certifi's plus RECRUITMAIL_CA_BUNDLE), ignores proxies and CA variables from
the environment (`trust_env` off: REQUESTS_CA_BUNDLE would override `verify=`), and has the
settings' timeouts. The sync `requests` session is what msal and google-auth take; the async
`httpx` client is for the mail APIs.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import certifi
import httpcore
import httpx
import requests

from core import netguard
from core.errors import (
    AuthExpiredError,
    MailError,
    PermanentMailError,
    QuotaExceeded,
    TransientMailError,
)
from core.settings import Settings
from core.tls import client_tls_context
from providers import refusals

# Connections kept open per provider: Exchange allows 4 concurrent requests per mailbox, and
# a worker sends for many mailboxes at once.
POOL = httpx.Limits(max_connections=32, max_keepalive_connections=16, keepalive_expiry=60)


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


def new_client(settings: Settings, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=client_tls_context(settings.ca_bundle),
        timeout=timeout,
        limits=POOL,
        trust_env=False,
    )


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the network guard checked: the
    name is resolved once, and TLS still verifies the certificate against the name (httpcore
    gives the URL's host as the server name)."""

    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await netguard.resolve(
                host, port, timeout or 10.0, allow_private=self._allow_private
            )
        except netguard.InternalAddress as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"{host} cannot be resolved") from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last or httpcore.ConnectError(f"{host}: no address answered")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over the guarded backend (for what a company typed: webhook URLs)."""

    def __init__(self, settings: Settings, *, allow_private: bool) -> None:
        super().__init__(verify=client_tls_context(settings.ca_bundle), trust_env=False)
        # httpx has no public way to set a network backend: the pool is built again with one.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=client_tls_context(settings.ca_bundle),
            max_connections=POOL.max_connections,
            max_keepalive_connections=POOL.max_keepalive_connections,
            keepalive_expiry=POOL.keepalive_expiry,
            network_backend=_GuardedBackend(allow_private),
        )


def guarded_client(settings: Settings, timeout: float) -> httpx.AsyncClient:
    """A client for URLs a company gave: only public addresses (unless an operator allows
    private ones), the checked address connected, redirects never followed."""
    return httpx.AsyncClient(
        transport=GuardedTransport(settings, allow_private=settings.allow_private_hosts),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


class HttpClients:
    """The pooled clients of one provider instance: an httpx client per event loop (a client
    belongs to the loop it first ran on), and one requests session for the sync libraries."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self._settings = settings
        self._timeout = timeout
        self._clients: dict[int, httpx.AsyncClient] = {}
        self._session: requests.Session | None = None
        self._lock = threading.Lock()
        self.created = 0  # how many httpx clients were made (tests check the reuse)

    def client(self) -> httpx.AsyncClient:
        loop = id(asyncio.get_running_loop())
        found = self._clients.get(loop)
        if found is None or found.is_closed:
            found = self._clients[loop] = new_client(self._settings, self._timeout)
            self.created += 1
        return found

    def session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                self._session = requests_session(self._settings)
            return self._session

    async def aclose(self) -> None:
        for client in list(self._clients.values()):
            await client.aclose()
        self._clients.clear()


def retry_after(value: str | None) -> timedelta | None:
    """A `Retry-After` header: a number of seconds, or an HTTP date (RFC 9110 10.2.3)."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(when - datetime.now(UTC), timedelta(0))


async def send_request(
    clients: HttpClients, service: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """One request on the provider's pooled client; a failure to get an answer is transient."""
    try:
        return await clients.client().request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise TransientMailError(f"{service} did not answer in time.") from exc
    except httpx.HTTPError as exc:  # connect, read and TLS failures
        raise TransientMailError(f"{service} is unreachable ({exc}).") from exc


def raise_for_answer(
    response: httpx.Response,
    service: str,
    *,
    unauthorized: Callable[[str], MailError],
    forbidden: Callable[[str], MailError] | None = None,
) -> None:
    """Return on success; otherwise raise the MailError the answer means, the server's own
    words in it: 429 and 5xx are transient (with the wait `Retry-After` asks for), 401 means
    `unauthorized`, 403 `forbidden`, any other 4xx is permanent."""
    status = response.status_code
    if status < 300:
        return
    detail = error_text(response)
    if status == 429 or status >= 500:
        wait = retry_after(response.headers.get("retry-after"))
        when = f" in {int(wait.total_seconds())} s" if wait else ""
        raise TransientMailError(
            f"{service} is throttling or unavailable ({status}); retrying{when}.",
            retry_after=wait,
        )
    if status == 401:
        raise unauthorized(detail)
    if status == 403 and forbidden is not None:
        raise forbidden(detail)
    raise PermanentMailError(f"{service} refused the message ({status}: {detail}).")


# Gmail's reasons for a spent rate or quota (developers.google.com/gmail/api/reference/quota
# and guides/handle-errors: 403 or 429 with rateLimitExceeded, userRateLimitExceeded,
# dailyLimitExceeded); Graph throttles a mailbox with 429 (MailboxConcurrency,
# ApplicationThrottled; learn.microsoft.com/graph/throttling-limits). Sources in
# docs/deliverability.md.
QUOTA_REASONS = frozenset({"ratelimitexceeded", "userratelimitexceeded", "dailylimitexceeded"})
# A throttled send API that names no wait is tried again after this long.
THROTTLE_RETRY = timedelta(minutes=1)


def _quota_reason(response: httpx.Response) -> bool:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return False
    if not isinstance(error, dict):
        return False
    reasons = [
        str(item.get("reason", "")) for item in error.get("errors") or () if isinstance(item, dict)
    ]
    reasons.append(str(error.get("status", "")))
    return any(reason.lower() in QUOTA_REASONS for reason in reasons)


def mail_api_answer(response: httpx.Response, service: str, address: str) -> None:
    """A mailbox's mail API (Graph, Gmail): 401 is a sign-in that no longer works, and a
    throttled or spent mailbox (429, Gmail's 403 rate reasons) is a deferral of the mailbox
    (QuotaExceeded), never the message's failure nor its recipient's."""
    status = response.status_code
    if status == 429 or (status == 403 and _quota_reason(response)):
        wait = retry_after(response.headers.get("retry-after")) or THROTTLE_RETRY
        said = f"{status}: {error_text(response)}"
        known = refusals.find(said)
        meaning = known.says(address=address) if known else ""
        raise QuotaExceeded(
            f"{meaning or f'{service} is throttling the mailbox {address}.'} The message waits "
            f"{int(wait.total_seconds())} s, as asked, and goes then. ({said})",
            retry_after=wait,
        )
    raise_for_answer(
        response,
        service,
        unauthorized=lambda detail: AuthExpiredError(
            f"{service} no longer accepts the mailbox's sign-in ({detail})."
        ),
        forbidden=lambda detail: PermanentMailError(
            f"{service} does not allow {address} to send this message ({detail})."
        ),
    )


def error_text(response: httpx.Response) -> str:
    """The error a JSON API put in its answer (`{"error": {"code", "message"}}` and its
    variants), or the start of the body."""
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
