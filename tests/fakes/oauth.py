"""Local fakes of the Microsoft identity platform plus Graph, and of Google OAuth plus Gmail.

Both serve HTTPS with the test CA (msal refuses http authorities), and both are driven by the
real msal and google-auth-oauthlib clients. Tests steer them: which mailbox signs in, whether
admin consent is required or the app is blocked, which scopes are granted, revoking tokens,
and throttling the send endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

from tests.fakes.mailboxes import GmailMail, GraphMail
from tests.fakes.smtp import Redirect, is_check
from tests.fakes.tls import TestCA


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned_jwt(claims: dict) -> str:
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64url(json.dumps(claims).encode())}.sig"


def _pkce_ok(verifier: str | None, challenge: str | None) -> bool:
    if not challenge:
        return False
    return _b64url(hashlib.sha256((verifier or "").encode()).digest()) == challenge


@dataclass
class Code:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    mailbox: str
    scopes: list[str]


class _Server:
    """A threaded HTTPS server on loopback dispatching to `handle(method, path, query, body)`."""

    def __init__(self, ca: TestCA, name: str) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real services: clients may pool

            def log_message(self, *args) -> None:
                pass

            def _dispatch(self, method: str) -> None:
                url = urlparse(self.path)
                with fake.lock:
                    fake.peers.append((url.path, self.client_address[1]))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = fake.handle(
                    method, url.path, parse_qs(url.query), body, self.headers
                )
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_PATCH(self) -> None:
                self._dispatch("PATCH")

            def do_PUT(self) -> None:
                self._dispatch("PUT")

            def do_DELETE(self) -> None:
                self._dispatch("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ca.server_context(name, ["127.0.0.1", "localhost"])
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.peers: list[tuple[str, int]] = []  # (path, client port) of every request
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, method, path, query, body, headers):  # pragma: no cover - overridden
        raise NotImplementedError

    def connections(self, suffix: str) -> set[int]:
        """The client ports (one per TCP connection) that requested paths ending in `suffix`."""
        with self.lock:
            return {port for path, port in self.peers if path.endswith(suffix)}

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _redirect(uri: str, params: dict) -> tuple[int, dict, bytes]:
    return 302, {"Location": f"{uri}?{urlencode(params)}", "Content-Type": "text/html"}, b""


def _form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode()).items()}


def _basic(headers) -> tuple[str, str]:
    value = headers.get("Authorization", "")
    if not value.startswith("Basic "):
        return "", ""
    user, _, password = base64.b64decode(value[6:]).decode().partition(":")
    return user, password


# -- Microsoft ------------------------------------------------------------------------------


@dataclass
class MicrosoftControls:
    mailbox: str = ""  # who signs in at /authorize
    require_admin_consent: bool = False  # token exchange answers AADSTS65001 until consented
    drop_send_scope: bool = False  # the user unticked Mail.Send
    throttle_sends: int = 0  # the next N sendMail calls answer 429 Retry-After: 1
    # msal refreshes tokens that expire within 5 minutes: 60 makes every send refresh.
    access_token_lifetime: int = 3600
    # The identity platform does not revoke a refresh token when it is used ("Refresh tokens
    # replace themselves with a fresh token upon every use. The Microsoft identity platform
    # doesn't revoke old refresh tokens", learn.microsoft.com/entra/identity-platform/
    # refresh-tokens), so two processes refreshing at once both succeed. A test that checks
    # the new refresh token is saved turns this on, and the old one stops working.
    single_use_refresh_tokens: bool = False
    consented_tenants: set[str] = field(default_factory=set)
    # The mailbox has no Exchange Online license: Graph answers MailboxNotEnabledForRESTAPI.
    unlicensed: bool = False
    # Mail the mailbox sends to itself is redirected to our inbound port.
    redirect: Redirect | None = None
    # The mailbox's other addresses (Exchange proxyAddresses), and the addresses it holds
    # Send As rights on.
    aliases: list[str] = field(default_factory=list)
    send_as: list[str] = field(default_factory=list)
    # Mailboxes the signed-in user holds Full Access on (a shared mailbox's members): with Send
    # As and the Mail.Send.Shared scope, /users/{that mailbox}/sendMail sends from it and saves
    # the mail in its Sent Items (learn.microsoft.com/graph/outlook-send-mail-from-other-user).
    full_access: list[str] = field(default_factory=list)
    # Seconds a sendMail takes: with it, requests to one mailbox overlap, and the fake counts
    # the most at once (Graph allows four per mailbox: MailboxConcurrency).
    send_delay: float = 0.0
    # The next N upload-session ranges answer 503 (an outage halfway through a large file).
    fail_uploads: int = 0
    # Tenants whose admin granted the application permission Mail.Read, and the mailboxes
    # Exchange's RBAC for Applications scopes it to (tenant id -> addresses).
    app_read: dict[str, set[str]] = field(default_factory=dict)
    # The same for the application permission Mail.Send (RBAC for Applications' "Application
    # Mail.Send" role): /users/{address}/sendMail with the application's token sends from an
    # address in the tenant's set; any other answers 403 ErrorAccessDenied, as Graph does.
    app_send: dict[str, set[str]] = field(default_factory=dict)
    # The token endpoint's next answers, as Entra ID gives them: (AADSTS code, error, words),
    # e.g. (53003, "invalid_grant", "Access has been blocked by Conditional Access policies.").
    token_error: tuple[int, str, str] | None = None


class MicrosoftFake(_Server):
    client_id = "ms-client-id"
    client_secret = "ms-client-secret"
    tenant = "organizations"

    def __init__(self, ca: TestCA) -> None:
        super().__init__(ca, "microsoft-fake")
        self.controls = MicrosoftControls()
        self.codes: dict[str, Code] = {}
        self.refresh_tokens: dict[str, tuple[str, list[str]]] = {}  # token -> (mailbox, scopes)
        self.access_tokens: dict[str, str] = {}  # token -> mailbox
        self.access_scopes: dict[str, list[str]] = {}  # access token -> its Graph scopes
        self.app_tokens: dict[str, str] = {}  # client-credentials token -> tenant
        self.revoked: set[str] = set()  # mailboxes whose refresh tokens were revoked
        self.sent: list[dict] = []
        self.sent_items: dict[str, list[bytes]] = {}  # mailbox -> its Sent Items
        self.in_flight: dict[str, int] = {}  # mailbox -> sendMail requests under way
        self.most_at_once: dict[str, int] = {}
        self.drafts: dict[str, dict] = {}  # draft id -> {address, mime, files}
        self.upload_sessions: dict[str, dict] = {}
        self.uploaded: list[list[int]] = []  # each finished upload session's chunk sizes
        self.authorize_requests: list[dict] = []
        self.token_requests: list[dict] = []
        self.issued: set[str] = set()  # every code and token handed out, for history scans
        # The mailboxes (Graph delta, messages, subscriptions: tests/fakes/mailboxes.py).
        self.mail = GraphMail(lambda: self.url, lambda: self.controls.full_access)

    @property
    def deliveries(self) -> list[dict]:
        """What was sent, less connection tests' own messages."""
        return [item for item in self.sent if not is_check(item["mime"])]

    def settings(self) -> dict:
        return {
            "microsoft_client_id": self.client_id,
            "microsoft_client_secret": self.client_secret,
            "microsoft_authority_host": self.url,
            "microsoft_tenant": self.tenant,
            "microsoft_graph_url": self.url,
        }

    def revoke(self, mailbox: str) -> None:
        """The admin revoked the mailbox's sessions: refresh tokens and (with continuous
        access evaluation) access tokens stop working."""
        with self.lock:
            self.revoked.add(mailbox)
            for token, owner in list(self.access_tokens.items()):
                if owner == mailbox:
                    del self.access_tokens[token]

    def _who(self, headers) -> tuple[str, list[str], set[str] | None] | None:
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        with self.lock:
            tenant = self.app_tokens.get(token)
            if tenant is not None:  # an application's token: its roles, its RBAC scope
                allowed = self.controls.app_read.get(tenant)
                roles = ["https://graph.microsoft.com/Mail.Read"] if allowed is not None else []
                return "", roles, {a.lower() for a in allowed or set()}
            mailbox = self.access_tokens.get(token)
            if mailbox is None:
                return None
            return mailbox, self.access_scopes.get(token, []), None

    def handle(self, method, path, query, body, headers):
        q = {k: v[0] for k, v in query.items()}
        parts = path.strip("/").split("/")
        drafts = path.startswith("/v1.0/users/") and len(parts) >= 4 and parts[3] == "messages"
        if drafts and method in ("POST", "DELETE"):  # drafts (large files); reading: mailboxes'
            return self._draft(method, parts[2], parts[4:], body, headers)
        if path.startswith("/upload/"):
            return self._upload_chunk(parts[1], body, headers)
        read = self.mail.handle(method, path, q, body, headers, self._who(headers))
        if read is not None:
            return read
        if path.endswith("/v2.0/.well-known/openid-configuration"):
            base = f"{self.url}/{parts[0]}"
            return (
                200,
                {},
                {
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "issuer": f"{self.url}/{parts[0]}/v2.0",
                    "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                },
            )
        if path.endswith("/oauth2/v2.0/authorize"):
            return self._authorize(q)
        if path.endswith("/oauth2/v2.0/token"):
            return self._token(_form(body), parts[0])
        if path.endswith("/v2.0/adminconsent"):
            with self.lock:
                self.controls.consented_tenants.add(parts[0])
            return _redirect(
                q["redirect_uri"],
                {"admin_consent": "True", "tenant": parts[0], "state": q.get("state", "")},
            )
        if path == "/v1.0/me":
            mailbox = self._bearer(headers)
            if mailbox is None:
                return 401, {}, {"error": {"code": "InvalidAuthenticationToken"}}
            me = {"mail": mailbox, "userPrincipalName": mailbox}
            if "proxyAddresses" in q.get("$select", ""):  # Graph returns it only when selected
                me["proxyAddresses"] = [f"SMTP:{mailbox}"] + [
                    f"smtp:{a}" for a in self.controls.aliases
                ]
            return 200, {}, me
        if path.startswith("/v1.0/users/") and path.endswith("/sendMail"):
            return self._send(parts[2], body, headers)
        return 404, {}, {"error": "not found"}

    # -- drafts and upload sessions (learn.microsoft.com/graph/outlook-large-attachments) -----

    CHUNK_UNIT = 320 * 1024
    CHUNK_MAX = 4 * 1024 * 1024

    def _draft(self, method: str, address: str, rest: list[str], body: bytes, headers):
        """POST messages (a draft from base64 MIME), POST messages/{id}/attachments (a small
        file), POST messages/{id}/attachments/createUploadSession, POST messages/{id}/send.
        Drafts need Mail.ReadWrite (Mail.ReadWrite.Shared in another mailbox)."""
        mailbox = self._bearer(headers)
        if mailbox is None:
            return 401, {}, {"error": {"code": "InvalidAuthenticationToken"}}
        with self.lock:
            scopes = self.access_scopes.get(headers.get("Authorization", "")[7:], [])
        other = address.lower() != mailbox.lower()
        needed = "/Mail.ReadWrite.Shared" if other else "/Mail.ReadWrite"
        if not any(s.endswith(needed) for s in scopes):
            return 403, {}, {"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}}
        if method == "DELETE":
            with self.lock:
                found = self.drafts.pop(rest[0] if len(rest) == 1 else "", None)
            return (204, {}, b"") if found else (404, {}, {"error": {"code": "ErrorItemNotFound"}})
        if not rest:
            if len(body) > self.CHUNK_MAX:
                return 413, {}, {"error": {"code": "RequestEntityTooLarge"}}
            draft_id = secrets.token_urlsafe(12)
            mime = base64.b64decode(body)
            with self.lock:
                self.drafts[draft_id] = {"address": address, "mime": mime, "files": []}
            found = message_from_bytes(mime).get("Message-ID", "")
            return 201, {}, {"id": draft_id, "isDraft": True, "internetMessageId": found}
        with self.lock:
            draft = self.drafts.get(rest[0])
        if draft is None or draft["address"] != address:
            return 404, {}, {"error": {"code": "ErrorItemNotFound"}}
        if rest[1:] == ["attachments"]:
            item = json.loads(body)
            data = base64.b64decode(item["contentBytes"])
            if len(data) >= 3 * 1000 * 1000:
                return (
                    413,
                    {},
                    {"error": {"code": "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"}},
                )
            draft["files"].append((item["name"], item["contentType"], data, "post"))
            return 201, {}, {"id": secrets.token_urlsafe(8)}
        if rest[1:] == ["attachments", "createUploadSession"]:
            item = json.loads(body)["AttachmentItem"]
            if item.get("attachmentType") != "file" or not 0 < int(item["size"]) <= 150_000_000:
                return 400, {}, {"error": {"code": "ErrorInvalidRequest"}}
            session_id = secrets.token_urlsafe(12)
            with self.lock:
                self.upload_sessions[session_id] = {
                    "draft": rest[0],
                    "name": item["name"],
                    "type": item.get("contentType", "application/octet-stream"),
                    "size": int(item["size"]),
                    "data": bytearray(),
                    "chunks": [],
                }
            return (
                201,
                {},
                {"uploadUrl": f"{self.url}/upload/{session_id}", "nextExpectedRanges": ["0-"]},
            )
        if rest[1:] == ["send"]:
            with self.lock:
                self.drafts.pop(rest[0], None)
            mime = _with_files(draft["mime"], draft["files"])
            with self.lock:
                self.sent.append(
                    {"address": address, "mime": mime, "at": time.monotonic(), "via": "draft"}
                )
                self.sent_items.setdefault(address.lower(), []).append(mime)
            return 202, {"request-id": secrets.token_hex(8)}, b""
        return 404, {}, {"error": "not found"}

    def _upload_chunk(self, session_id: str, body: bytes, headers):
        """PUT to an upload URL: pre-authenticated (an Authorization header is refused), each
        range where the last ended, up to 4 MB and a multiple of 320 KiB but the last."""
        with self.lock:
            session = self.upload_sessions.get(session_id)
        if session is None:
            return 404, {}, {"error": {"code": "ErrorItemNotFound"}}
        if headers.get("Authorization"):
            return 401, {}, {"error": {"code": "InvalidAudience"}}
        with self.lock:
            if self.controls.fail_uploads > 0:
                self.controls.fail_uploads -= 1
                return 503, {}, {"error": {"code": "ServiceUnavailable"}}
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers.get("Content-Range", ""))
        if match is None:
            return 400, {}, {"error": {"code": "InvalidContentRange"}}
        start, end, total = (int(g) for g in match.groups())
        done = len(session["data"])
        last = end + 1 == total
        if (
            start != done
            or total != session["size"]
            or end - start + 1 != len(body)
            or len(body) > self.CHUNK_MAX
            or (not last and len(body) % self.CHUNK_UNIT)
        ):
            return 416, {}, {"error": {"code": "InvalidRange"}}
        session["data"] += body
        session["chunks"].append(len(body))
        if not last:
            return 200, {}, {"nextExpectedRanges": [f"{end + 1}-"]}
        with self.lock:
            self.upload_sessions.pop(session_id, None)
            self.uploaded.append(session["chunks"])
            draft = self.drafts[session["draft"]]
            draft["files"].append(
                (session["name"], session["type"], bytes(session["data"]), session["chunks"])
            )
        return 201, {"Location": f"{self.url}/attachments/{secrets.token_hex(6)}"}, b""

    def _authorize(self, q: dict):
        self.authorize_requests.append(q)
        code = secrets.token_urlsafe(16)
        self.issued.add(code)
        scopes = q.get("scope", "").split()
        if self.controls.drop_send_scope:
            scopes = [s for s in scopes if s.lower() != "mail.send"]
        with self.lock:
            self.codes[code] = Code(
                q["client_id"],
                q["redirect_uri"],
                q.get("code_challenge", ""),
                q.get("nonce", ""),
                self.controls.mailbox or q.get("login_hint", ""),  # default: who was hinted
                scopes,
            )
        return _redirect(q["redirect_uri"], {"code": code, "state": q.get("state", "")})

    def _error(self, code: int, error: str, text: str):
        return (
            400,
            {},
            {
                "error": error,
                "error_description": f"AADSTS{code}: {text}",
                "error_codes": [code],
            },
        )

    def _token(self, form: dict, tenant: str = ""):
        self.token_requests.append(form)
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return self._error(7000215, "invalid_client", "Invalid client secret provided.")
        if self.controls.token_error is not None and form.get("grant_type") != "client_credentials":
            return self._error(*self.controls.token_error)
        if form.get("grant_type") == "authorization_code":
            with self.lock:
                code = self.codes.pop(form.get("code", ""), None)
            if code is None or code.redirect_uri != form.get("redirect_uri"):
                return self._error(70000, "invalid_grant", "The code is invalid or was used.")
            if not _pkce_ok(form.get("code_verifier"), code.challenge):
                return self._error(50148, "invalid_grant", "The code_verifier does not match.")
            tenant = code.mailbox.rpartition("@")[2]
            if self.controls.require_admin_consent and not (
                self.controls.consented_tenants & {tenant, self.tenant}
            ):
                return self._error(
                    65001,
                    "invalid_grant",
                    "The user or administrator has not consented to use the application.",
                )
            return 200, {}, self._tokens(code.mailbox, code.scopes, code.nonce)
        if form.get("grant_type") == "client_credentials":
            # An application token for the tenant; what it may read is the tenant's grant.
            access = secrets.token_urlsafe(24)
            with self.lock:
                self.issued.add(access)
                self.app_tokens[access] = tenant
            return 200, {}, {"token_type": "Bearer", "expires_in": 3599, "access_token": access}
        if form.get("grant_type") == "refresh_token":
            with self.lock:
                given = form.get("refresh_token", "")
                if self.controls.single_use_refresh_tokens:
                    found = self.refresh_tokens.pop(given, None)
                else:
                    found = self.refresh_tokens.get(given)
            if found is None or found[0] in self.revoked:
                return self._error(
                    700082, "invalid_grant", "The refresh token has expired due to inactivity."
                )
            return 200, {}, self._tokens(found[0], found[1], None)
        return self._error(900144, "invalid_request", "grant_type is missing.")

    def _tokens(self, mailbox: str, scopes: list[str], nonce: str | None) -> dict:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        graph_scopes = [f"https://graph.microsoft.com/{s}" for s in scopes if "/" not in s]
        with self.lock:
            self.issued.update((access, refresh))
            self.access_tokens[access] = mailbox
            self.access_scopes[access] = graph_scopes
            self.refresh_tokens[refresh] = (mailbox, scopes)  # a fresh one on every use
        uid, utid = hashlib.md5(mailbox.encode()).hexdigest(), "tenant-" + mailbox.split("@")[-1]
        claims = {
            "aud": self.client_id,
            "iss": f"{self.url}/{utid}/v2.0",
            "iat": int(time.time()),
            "exp": int(time.time()) + 3600,
            "oid": uid,
            "tid": utid,
            "preferred_username": mailbox,
            "name": mailbox.split("@")[0],
            "sub": uid,
        }
        if nonce:
            claims["nonce"] = nonce
        graph = [s for s in scopes if s not in ("openid", "profile", "offline_access")]
        return {
            "token_type": "Bearer",
            "scope": " ".join(f"https://graph.microsoft.com/{s}" for s in graph),
            "expires_in": self.controls.access_token_lifetime,
            "ext_expires_in": self.controls.access_token_lifetime,
            "access_token": access,
            "refresh_token": refresh,
            "id_token": unsigned_jwt(claims),
            "client_info": _b64url(json.dumps({"uid": uid, "utid": utid}).encode()),
        }

    def _bearer(self, headers) -> str | None:
        value = headers.get("Authorization", "")
        with self.lock:
            return self.access_tokens.get(value.removeprefix("Bearer "))

    def _send(self, address: str, body: bytes, headers):
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        with self.lock:
            tenant = self.app_tokens.get(token)
        if tenant is not None:
            return self._send_as_application(tenant, address, body)
        mailbox = self._bearer(headers)
        if mailbox is None:
            return 401, {}, {"error": {"code": "InvalidAuthenticationToken"}}
        with self.lock:
            if self.controls.throttle_sends > 0:
                self.controls.throttle_sends -= 1
                return 429, {"Retry-After": "1"}, {"error": {"code": "ApplicationThrottled"}}
        own = {mailbox.lower(), *(a.lower() for a in self.controls.aliases)}
        other = address.lower() not in own
        with self.lock:
            scopes = self.access_scopes.get(headers.get("Authorization", "")[7:], [])
        denied = {
            "code": "ErrorAccessDenied",
            "message": "Access is denied. Check credentials and try again.",
        }
        if other and not any(s.endswith("/Mail.Send.Shared") for s in scopes):
            return 403, {}, {"error": denied}
        if other and address.lower() not in {a.lower() for a in self.controls.send_as}:
            return (
                403,
                {},
                {
                    "error": {
                        "code": "ErrorSendAsDenied",
                        "message": "The user account which was used to submit this request does "
                        "not have the right to send mail on behalf of the specified sending "
                        "account. Cannot submit message.",
                    }
                },
            )
        if other and address.lower() not in {a.lower() for a in self.controls.full_access}:
            return 403, {}, {"error": denied}
        if headers.get("Content-Type") != "text/plain":
            return 415, {}, {"error": {"code": "UnsupportedMediaType"}}
        if len(body) > self.CHUNK_MAX:  # a REST request carries at most 4 MB
            return 413, {}, {"error": {"code": "RequestEntityTooLarge", "message": "Too large"}}
        if self.controls.unlicensed:
            return (
                404,
                {},
                {
                    "error": {
                        "code": "MailboxNotEnabledForRESTAPI",
                        "message": "The mailbox is either inactive, soft-deleted, or is hosted "
                        "on-premise.",
                    }
                },
            )
        mime = base64.b64decode(body)
        if self.controls.send_delay:
            with self.lock:
                key = address.lower()
                self.in_flight[key] = self.in_flight.get(key, 0) + 1
                self.most_at_once[key] = max(self.most_at_once.get(key, 0), self.in_flight[key])
            time.sleep(self.controls.send_delay)
            with self.lock:
                self.in_flight[key] -= 1
        with self.lock:
            self.sent.append({"address": address, "mime": mime, "at": time.monotonic()})
            # /users/{address}/sendMail saves the mail in that mailbox's Sent Items.
            self.sent_items.setdefault(address.lower(), []).append(mime)
        _redirect_to_self(self.controls.redirect, mailbox, mime)
        return 202, {"request-id": secrets.token_hex(8)}, b""

    def _send_as_application(self, tenant: str, address: str, body: bytes):
        """The application's token: allowed where the tenant's admin granted Mail.Send and
        RBAC for Applications scopes it to the address."""
        with self.lock:
            allowed = {a.lower() for a in self.controls.app_send.get(tenant, set())}
        if address.lower() not in allowed:
            return (
                403,
                {},
                {
                    "error": {
                        "code": "ErrorAccessDenied",
                        "message": "Access is denied. Check credentials and try again.",
                    }
                },
            )
        if len(body) > self.CHUNK_MAX:
            return 413, {}, {"error": {"code": "RequestEntityTooLarge", "message": "Too large"}}
        mime = base64.b64decode(body)
        with self.lock:
            self.sent.append(
                {"address": address, "mime": mime, "at": time.monotonic(), "application": True}
            )
            self.sent_items.setdefault(address.lower(), []).append(mime)
        return 202, {"request-id": secrets.token_hex(8)}, b""


# -- Google ---------------------------------------------------------------------------------


@dataclass
class GoogleControls:
    mailbox: str = ""
    block_app: bool = False  # Workspace policy: the browser comes back with admin_policy_enforced
    # An unverified app in testing, the person not a test user: the browser comes back with
    # access_denied.
    unverified_app: bool = False
    drop_send_scope: bool = False
    throttle_sends: int = 0
    redirect: Redirect | None = None
    # users.settings.sendAs: {"sendAsEmail", "verificationStatus"} of the mailbox's aliases.
    send_as: list[dict] = field(default_factory=list)


class GoogleFake(_Server):
    client_id = "google-client-id.apps.example"
    client_secret = "google-client-secret"

    def __init__(self, ca: TestCA) -> None:
        super().__init__(ca, "google-fake")
        self.controls = GoogleControls()
        self.codes: dict[str, Code] = {}
        self.refresh_tokens: dict[str, str] = {}  # token -> mailbox
        self.token_scopes: dict[str, list[str]] = {}  # access or refresh token -> scopes
        self.access_tokens: dict[str, str] = {}
        self.revoked: set[str] = set()
        self.sent: list[dict] = []
        self.authorize_requests: list[dict] = []
        self.issued: set[str] = set()
        # What each mailbox granted this client so far (include_granted_scopes adds to it).
        self.granted: dict[str, set[str]] = {}
        self.uploads: dict[str, tuple[str, int]] = {}  # upload id -> (mailbox, declared size)
        # The mailboxes (Gmail history, messages, watch) and Pub/Sub's pushes.
        self.mail = GmailMail()

    @property
    def deliveries(self) -> list[dict]:
        """What was sent, less connection tests' own messages."""
        return [item for item in self.sent if not is_check(item["mime"])]

    def settings(self) -> dict:
        return {
            "google_client_id": self.client_id,
            "google_client_secret": self.client_secret,
            "google_auth_uri": f"{self.url}/o/oauth2/auth",
            "google_token_uri": f"{self.url}/token",
            "google_gmail_url": self.url,
            "google_certs_url": f"{self.url}/oauth2/v1/certs",
            "gmail_pubsub_topic": "projects/recruitmail-test/topics/gmail",
            "gmail_push_service_account": self.mail.service_account,
        }

    def revoke(self, mailbox: str) -> None:
        """The user removed the app's access: its refresh and access tokens stop working."""
        with self.lock:
            self.revoked.add(mailbox)
            for token, owner in list(self.access_tokens.items()):
                if owner == mailbox:
                    del self.access_tokens[token]

    def handle(self, method, path, query, body, headers):
        q = {k: v[0] for k, v in query.items()}
        with self.lock:
            token = headers.get("Authorization", "").removeprefix("Bearer ")
            owner = self.access_tokens.get(token)
            who = None if owner is None else (owner, self.token_scopes.get(token, []))
        read = self.mail.handle(method, path, q, body, headers, who)
        if read is not None:
            return read
        if path == "/o/oauth2/auth":
            self.authorize_requests.append(q)
            if self.controls.block_app:
                return _redirect(
                    q["redirect_uri"], {"error": "admin_policy_enforced", "state": q["state"]}
                )
            if self.controls.unverified_app:
                return _redirect(q["redirect_uri"], {"error": "access_denied", "state": q["state"]})
            code = secrets.token_urlsafe(16)
            self.issued.add(code)
            scopes = q.get("scope", "").split()
            if self.controls.drop_send_scope:
                scopes = [s for s in scopes if not s.endswith("gmail.send")]
            mailbox = self.controls.mailbox or q.get("login_hint", "")
            with self.lock:
                if q.get("include_granted_scopes") == "true":  # incremental authorization
                    scopes = sorted(self.granted.get(mailbox, set()) | set(scopes))
                self.granted[mailbox] = set(scopes)
                self.codes[code] = Code(
                    q["client_id"],
                    q["redirect_uri"],
                    q.get("code_challenge", ""),
                    "",
                    mailbox,
                    scopes,
                )
            return _redirect(q["redirect_uri"], {"code": code, "state": q["state"]})
        if path == "/admin/allow-app":
            # A stand-in for the Workspace Admin console's "Trusted" switch, for walking the
            # blocked journey by hand (tests/fakes/serve.py).
            self.controls.block_app = False
            page = b"<!doctype html><title>Allowed</title><p>The fake Workspace now trusts the app."
            return 200, {"Content-Type": "text/html; charset=utf-8"}, page
        if path == "/token":
            return self._token(_form(body), headers)
        if path == "/gmail/v1/users/me/messages/send":
            return self._send(body, headers)
        if path == "/upload/gmail/v1/users/me/messages/send":
            return self._upload(method, q, body, headers)
        if path == "/gmail/v1/users/me/settings/sendAs":
            return self._send_as(headers)
        return 404, {}, {"error": "not found"}

    def _send_as(self, headers):
        with self.lock:
            token = headers.get("Authorization", "").removeprefix("Bearer ")
            mailbox = self.access_tokens.get(token)
            scopes = self.token_scopes.get(token, [])
        if mailbox is None:
            return 401, {}, {"error": {"code": 401, "message": "Invalid Credentials"}}
        if not any(s.endswith("gmail.settings.basic") for s in scopes):
            return 403, {}, {"error": {"code": 403, "message": "Insufficient Permission"}}
        primary = {"sendAsEmail": mailbox, "isPrimary": True}
        return 200, {}, {"sendAs": [primary, *self.controls.send_as]}

    def _token(self, form: dict, headers):
        # fetch_token authenticates with HTTP Basic; Credentials.refresh in the form body.
        client = (
            _basic(headers)
            if "Authorization" in headers
            else (
                form.get("client_id"),
                form.get("client_secret"),
            )
        )
        if tuple(client) != (self.client_id, self.client_secret):
            return 401, {}, {"error": "invalid_client", "error_description": "Unauthorized"}
        if form.get("grant_type") == "authorization_code":
            with self.lock:
                code = self.codes.pop(form.get("code", ""), None)
            if code is None:
                return 400, {}, {"error": "invalid_grant", "error_description": "Bad code."}
            if not _pkce_ok(form.get("code_verifier"), code.challenge):
                return 400, {}, {"error": "invalid_grant", "error_description": "Bad verifier."}
            access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            with self.lock:
                self.issued.update((access, refresh))
                self.access_tokens[access] = code.mailbox
                self.refresh_tokens[refresh] = code.mailbox
                self.token_scopes[access] = self.token_scopes[refresh] = code.scopes
            return (
                200,
                {},
                {
                    "access_token": access,
                    "refresh_token": refresh,
                    "expires_in": 3599,
                    "token_type": "Bearer",
                    "scope": " ".join(_google_scope(s) for s in code.scopes),
                    "id_token": unsigned_jwt(
                        {"email": code.mailbox, "email_verified": True, "aud": self.client_id}
                    ),
                },
            )
        if form.get("grant_type") == "refresh_token":
            mailbox = self.refresh_tokens.get(form.get("refresh_token", ""))
            if mailbox is None or mailbox in self.revoked:
                return (
                    400,
                    {},
                    {
                        "error": "invalid_grant",
                        "error_description": "Token has been expired or revoked.",
                    },
                )
            access = secrets.token_urlsafe(24)
            granted = self.token_scopes.get(form["refresh_token"], [])
            asked = form.get("scope", "").split()
            # An access token for the scopes asked (of those granted), or all of them.
            scopes = [s for s in granted if _google_scope(s) in asked] if asked else granted
            with self.lock:
                self.issued.add(access)
                self.access_tokens[access] = mailbox
                self.token_scopes[access] = scopes
            return 200, {}, {"access_token": access, "expires_in": 3599, "token_type": "Bearer"}
        return 400, {}, {"error": "unsupported_grant_type"}

    # A request's JSON is small; a message over this goes through the upload URI.
    SIMPLE_LIMIT = 5 * 1024 * 1024
    UPLOAD_LIMIT = 35 * 1024 * 1024

    def _upload(self, method: str, q: dict, body: bytes, headers):
        """users.messages.send's resumable media upload: POST opens a session for a declared
        size (message/*, up to 35 MB), PUT to the session's URI sends the message."""
        with self.lock:
            mailbox = self.access_tokens.get(
                headers.get("Authorization", "").removeprefix("Bearer ")
            )
        if mailbox is None:
            return 401, {}, {"error": {"code": 401, "message": "Invalid Credentials"}}
        if q.get("uploadType") != "resumable":
            return 400, {}, {"error": {"code": 400, "message": "Unsupported uploadType"}}
        if method == "POST":
            size = int(headers.get("X-Upload-Content-Length") or 0)
            if not str(headers.get("X-Upload-Content-Type", "")).startswith("message/"):
                return 400, {}, {"error": {"code": 400, "message": "Media type not allowed"}}
            if size > self.UPLOAD_LIMIT:
                return 413, {}, {"error": {"code": 413, "message": "Request Entity Too Large"}}
            upload_id = secrets.token_urlsafe(12)
            with self.lock:
                self.uploads[upload_id] = (mailbox, size)
            location = (
                f"{self.url}/upload/gmail/v1/users/me/messages/send"
                f"?uploadType=resumable&upload_id={upload_id}"
            )
            return 200, {"Location": location}, b""
        with self.lock:
            session = self.uploads.pop(q.get("upload_id", ""), None)
        if session is None or session[0] != mailbox:
            return 404, {}, {"error": {"code": 404, "message": "No such upload session"}}
        if len(body) != session[1]:
            return 400, {}, {"error": {"code": 400, "message": "Wrong content length"}}
        return self._deliver(mailbox, body, via="resumable")

    def _send(self, body: bytes, headers):
        if len(body) > self.SIMPLE_LIMIT:
            return 413, {}, {"error": {"code": 413, "message": "Request payload too large"}}
        with self.lock:
            mailbox = self.access_tokens.get(
                headers.get("Authorization", "").removeprefix("Bearer ")
            )
            if mailbox is None:
                return 401, {}, {"error": {"code": 401, "message": "Invalid Credentials"}}
            if self.controls.throttle_sends > 0:
                self.controls.throttle_sends -= 1
                return 429, {"Retry-After": "1"}, {"error": {"code": 429, "message": "Rate"}}
        raw = base64.urlsafe_b64decode(json.loads(body)["raw"])
        return self._deliver(mailbox, raw, via="json")

    def _deliver(self, mailbox: str, raw: bytes, via: str):
        message_id = secrets.token_hex(8)
        with self.lock:
            self.sent.append({"address": mailbox, "mime": raw, "at": time.monotonic(), "via": via})
        _redirect_to_self(self.controls.redirect, mailbox, raw)
        return 200, {}, {"id": message_id, "threadId": message_id, "labelIds": ["SENT"]}


def _with_files(mime: bytes, files: list[tuple[str, str, bytes, object]]) -> bytes:
    """The draft as Exchange sends it: its MIME with the files attached since."""
    from email import policy

    message = message_from_bytes(mime, policy=policy.SMTP)
    for name, content_type, data, _ in files:
        maintype, _, subtype = content_type.partition("/")
        if not message.is_multipart():
            message.make_mixed()
        message.add_attachment(
            data, maintype=maintype, subtype=subtype or "octet-stream", filename=name
        )
    return message.as_bytes()


def _redirect_to_self(redirect: Redirect | None, mailbox: str, mime: bytes) -> None:
    """Mail the mailbox sends to itself lands in its own inbox, which redirects it on."""
    to = [a for _, a in getaddresses(message_from_bytes(mime).get_all("To", []))]
    if redirect is not None and redirect.applies(to):
        redirect.deliver(mailbox, mime)


def _google_scope(scope: str) -> str:
    return {"email": "https://www.googleapis.com/auth/userinfo.email"}.get(scope, scope)


def client_context(ca: TestCA) -> ssl.SSLContext:
    """What a browser trusting the test CA uses to follow the authorization URL."""
    return ssl.create_default_context(cafile=str(ca.ca_pem))
