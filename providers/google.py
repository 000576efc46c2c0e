"""Google Workspace: sign-in through google-auth-oauthlib (offline access, PKCE), sending
through the Gmail API `users.messages.send` with the raw MIME."""

from __future__ import annotations

import base64
import json
import os
from typing import Any, ClassVar

import google.auth.exceptions
import google.auth.transport.requests
import oauthlib.oauth2
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import Flow

from core.errors import (
    AdminConsentRequiredError,
    AuthExpiredError,
    ConfigurationError,
    PermanentMailError,
    TransientMailError,
)
from core.inbound_paths.paths import READ_SCOPES
from core.throttle import Rate, rate_of
from providers import refusals
from providers.base import AdminConsentHelp, Grant, Identity, OAuthProvider, Secret, too_large
from providers.http import mail_api_answer, send_request
from providers.mailbox import GmailReader

GMAIL_SEND = "https://www.googleapis.com/auth/gmail.send"
# Mailbox sync: read the mailbox (a restricted scope: docs/connections.md says what Google's
# verification asks).
GMAIL_READONLY = READ_SCOPES["google"]
# Only with RECRUITMAIL_GOOGLE_SEND_AS_ALIASES: lists the mailbox's verified send-as aliases.
GMAIL_SETTINGS = "https://www.googleapis.com/auth/gmail.settings.basic"
SCOPES = ["openid", "https://www.googleapis.com/auth/userinfo.email", GMAIL_SEND]
# A user may untick gmail.send on the consent screen; oauthlib would then raise "Scope has
# changed". Relaxed, the exchange passes and the granted scopes are checked explicitly below.
os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")
_BLOCKED = {"admin_policy_enforced", "org_internal"}
# users.messages.send takes a message in its JSON (`raw`) for small mail, and through its media
# upload URI (message/rfc822) up to 35 MB (developers.google.com/gmail/api/reference/rest/v1/
# users.messages/send; guides/uploads: the simple way "for 5 MB or less", a resumable upload
# for larger files). docs/connections.md, Limits.
GMAIL_UPLOAD_LIMIT = 35 * 1024 * 1024
GMAIL_SIMPLE_LIMIT = 5 * 1024 * 1024


def admin_steps(client_id: str, read: bool = False) -> list[str]:
    """What a Google Workspace administrator does to allow Recruitmail, step by step."""
    scopes = (
        f"Recruitmail asks for two Gmail scopes, {GMAIL_SEND} (send email on the mailbox's "
        f"behalf) and {GMAIL_READONLY} (read the mailbox, to bring candidates' replies in), "
        "plus openid and userinfo.email to confirm which mailbox signed in."
        if read
        else f"Recruitmail asks for one Gmail scope, {GMAIL_SEND} (send email on the mailbox's "
        "behalf), plus openid and userinfo.email to confirm which mailbox signed in. It cannot "
        "read mail."
    )
    return [
        "Sign in to the Google Admin console (admin.google.com) as a super administrator.",
        "Go to Security → Access and data control → API controls.",
        "Under App access control, open Manage third-party app access, then choose "
        "Add app → OAuth App Name Or Client ID.",
        f"Search for the OAuth client ID {client_id}, select Recruitmail, and choose the "
        "organisational unit that holds the recruiting mailbox (or the whole organisation).",
        f"Set its access to Trusted. {scopes}",
        "Save. The change can take a few minutes to apply; then the person connecting the "
        "mailbox continues the setup in Recruitmail.",
    ]


def admin_instructions(client_id: str, read: bool = False) -> str:
    """The steps as text, one numbered line each (the pages show them as a list)."""
    steps = (f"{n}. {step}" for n, step in enumerate(admin_steps(client_id, read), 1))
    return "\n".join(["Your Google Workspace administrator must allow Recruitmail:", *steps])


class GoogleProvider(OAuthProvider):
    """A Google Workspace mailbox: google-auth-oauthlib sign-in, Gmail `messages.send`."""

    kind: ClassVar[str] = "google"
    label: ClassVar[str] = "Google"

    def rate(self) -> Rate:
        return rate_of("google", self.settings)

    read_scope: ClassVar[str] = GMAIL_READONLY

    def reader(self, user: str | None = None, delegate: str = "") -> GmailReader:
        return GmailReader(self.http, self.settings.google_gmail_url)

    def admin_consent_help(
        self, connection_id: str, address: str, state: str, read: bool = False, write: bool = False
    ) -> AdminConsentHelp:
        client_id = self.settings.google_client_id
        return AdminConsentHelp(admin_instructions=admin_instructions(client_id, read))

    def _flow(
        self, state: str | None = None, code_verifier: str | None = None, read: bool = False
    ) -> Flow:
        redirect = self.settings.oauth_redirect_uri(self.kind)
        flow = Flow.from_client_config(
            {
                "web": {
                    "client_id": self.settings.google_client_id,
                    "client_secret": self.settings.google_client_secret,
                    "auth_uri": self.settings.google_auth_uri,
                    "token_uri": self.settings.google_token_uri,
                    "redirect_uris": [redirect],
                }
            },
            scopes=self._scopes + ([GMAIL_READONLY] if read else []),
            redirect_uri=redirect,
            state=state,
            code_verifier=code_verifier,
            autogenerate_code_verifier=code_verifier is None,
        )
        session = self.http.session()
        flow.oauth2session.verify = session.verify
        flow.oauth2session.trust_env = False
        return flow

    @property
    def _scopes(self) -> list[str]:
        return SCOPES + ([GMAIL_SETTINGS] if self.settings.google_send_as_aliases else [])

    def authorization_url(
        self, state: str, login_hint: str, read: bool = False, write: bool = False
    ) -> tuple[str, Secret]:
        flow = self._flow(read=read)
        url, _ = flow.authorization_url(
            access_type="offline",
            # Google returns a refresh token only on consent; a reconnect needs a new one.
            prompt="consent",
            include_granted_scopes="true",
            login_hint=login_hint,
            state=state,
        )
        return url, {"state": state, "code_verifier": flow.code_verifier}

    def exchange_code(self, flow_data: Secret, query: dict[str, str]) -> Grant:
        error = str(query.get("error", ""))
        if error:
            subtype = str(query.get("error_subtype", ""))
            known = refusals.find(f"{error} {subtype}", "google")
            if error in _BLOCKED or subtype in _BLOCKED:
                assert known is not None
                raise AdminConsentRequiredError(known.explain())
            if error == "access_denied" and known is not None:
                raise PermanentMailError(known.explain())
            raise PermanentMailError(f"Google refused the sign-in ({error}).")
        flow = self._flow(state=flow_data["state"], code_verifier=flow_data["code_verifier"])
        try:
            token = flow.fetch_token(code=str(query.get("code", "")))
        except oauthlib.oauth2.rfc6749.errors.OAuth2Error as exc:
            if exc.error in ("invalid_client", "unauthorized_client"):
                raise ConfigurationError(
                    "Google refused Recruitmail's client credentials; an operator must update "
                    "RECRUITMAIL_GOOGLE_CLIENT_ID and RECRUITMAIL_GOOGLE_CLIENT_SECRET."
                ) from exc
            if exc.error in _BLOCKED:
                raise AdminConsentRequiredError(
                    refusals.explain(str(exc.error), "google") or str(exc.error)
                ) from exc
            raise PermanentMailError(
                f"Google refused the sign-in ({exc.error}); start the sign-in again."
            ) from exc
        except OSError as exc:
            raise TransientMailError(f"Google sign-in is unreachable ({exc}).") from exc
        granted = token.get("scope") or []
        granted = granted.split() if isinstance(granted, str) else list(granted)
        if GMAIL_SEND not in granted:
            raise PermanentMailError(
                "The permission to send email on your behalf was not granted, so Recruitmail "
                "cannot send from this mailbox. Sign in again and keep that box ticked."
            )
        if not token.get("refresh_token"):
            raise PermanentMailError(
                "Google returned no refresh token; remove Recruitmail from the account's "
                "third-party access and sign in again."
            )
        email = str(_id_token_claims(token.get("id_token", "")).get("email", "")).lower()
        aliases: tuple[str, ...] = ()
        if self.settings.google_send_as_aliases and GMAIL_SETTINGS in granted:
            aliases = self._send_as(str(token["access_token"])).aliases
        return Grant(
            secret={"refresh_token": token["refresh_token"]},
            identity=Identity(email, aliases),
            scopes=tuple(granted),
        )

    def identity(self, access_token: str, address: str) -> Identity:
        """With send-as aliases on, the mailbox and its verified aliases, from Gmail; else
        nothing more than the sign-in said (gmail.send cannot read the profile)."""
        if not self.settings.google_send_as_aliases:
            return Identity("")
        return self._send_as(access_token)

    def _send_as(self, access_token: str) -> Identity:
        """`users.settings.sendAs.list`: the primary address, and the aliases whose
        verificationStatus is `accepted` (the owner of the alias confirmed it)."""
        url = f"{self.settings.google_gmail_url.rstrip('/')}/gmail/v1/users/me/settings/sendAs"
        try:
            response = self.http.session().get(
                url,
                headers={"Authorization": f"Bearer {access_token}"},
                timeout=self.settings.oauth_http_timeout_seconds,
            )
        except OSError as exc:
            raise TransientMailError(f"The Gmail API is unreachable ({exc}).") from exc
        if response.status_code != 200:
            return Identity("")  # the scope was not granted: nothing beyond the sign-in
        entries = response.json().get("sendAs") or []
        primary = next(
            (str(e.get("sendAsEmail", "")).lower() for e in entries if e.get("isPrimary")), ""
        )
        aliases = tuple(
            str(e.get("sendAsEmail", "")).lower()
            for e in entries
            if e.get("verificationStatus") == "accepted"
        )
        return Identity(primary, aliases)

    def _credentials(self, secret: Secret, read: bool = False) -> Credentials:
        return Credentials(
            token=None,
            refresh_token=secret.get("refresh_token"),
            token_uri=self.settings.google_token_uri,
            client_id=self.settings.google_client_id,
            client_secret=self.settings.google_client_secret,
            scopes=[GMAIL_READONLY if read else GMAIL_SEND],
        )

    def mailbox_refusal(self, identity: Identity, address: str) -> str | None:
        """Google sends only as the signed-in account or its verified send-as addresses. A
        Google group or a mailbox delegated to the person (Gmail delegation) cannot be signed
        into or sent from through the API: the way is a send-as address on a member's mailbox,
        and the group's mail forwarded for replies."""
        if identity.vouches_for(address):
            return None
        return (
            f"You signed in as {identity.mailbox}, but Google does not list {address} as that "
            "account's address or a verified send-as alias of it. If "
            f"{address} is its own Google account, sign in with it. If it is a Google group or "
            "a mailbox delegated to you (neither can be signed into): in Gmail for "
            f"{identity.mailbox}, open Settings → See all settings → Accounts → Send mail as → "
            f"Add another email address, add {address} and confirm it (for a group, the "
            "confirmation reaches the group's members), then connect again; for replies, add "
            "the hosted recruiting address as a member of the group or forward its mail there "
            "(docs/connections.md, Shared mailboxes, aliases and groups)."
        )

    def refresh(self, secret: Secret, read: bool = False) -> tuple[str, Secret | None]:
        if not secret.get("refresh_token"):
            raise AuthExpiredError("No Google sign-in is stored; reconnect the mailbox.")
        credentials = self._credentials(secret, read)
        try:
            credentials.refresh(google.auth.transport.requests.Request(self.http.session()))
        except google.auth.exceptions.RefreshError as exc:
            if getattr(exc, "retryable", False):
                raise TransientMailError(f"Google sign-in is unavailable ({exc}).") from exc
            row = refusals.find("invalid_grant", "google")
            assert row is not None
            raise AuthExpiredError(row.explain(_said(exc))) from exc
        except google.auth.exceptions.TransportError as exc:
            raise TransientMailError(f"Google sign-in is unreachable ({exc}).") from exc
        changed = None
        if credentials.refresh_token and credentials.refresh_token != secret["refresh_token"]:
            changed = {"refresh_token": credentials.refresh_token}
        return str(credentials.token), changed

    async def post_mime(
        self,
        access_token: str,
        address: str,
        mime: bytes,
        mailbox: str = "",
        scopes: tuple[str, ...] = (),
    ) -> str:
        """The message as it is (our Message-ID kept): in the request's JSON when small, else
        through a resumable upload; over Gmail's limit, refused before any request."""
        if len(mime) > GMAIL_UPLOAD_LIMIT:
            raise PermanentMailError(too_large(len(mime), GMAIL_UPLOAD_LIMIT, "Gmail"))
        if len(mime) > GMAIL_SIMPLE_LIMIT:
            return await self._upload(access_token, address, mime)
        url = f"{self.settings.google_gmail_url.rstrip('/')}/gmail/v1/users/me/messages/send"
        response = await send_request(
            self.http,
            "The Gmail API",
            "POST",
            url,
            json={"raw": base64.urlsafe_b64encode(mime).decode()},
            headers={"Authorization": f"Bearer {access_token}"},
        )
        mail_api_answer(response, "Gmail", address)
        return str(response.json().get("id", ""))

    async def _upload(self, access_token: str, address: str, mime: bytes) -> str:
        """A resumable upload: a session asked for with the message's size, then the message
        in one request (the session's URI is Google's own, on the same host)."""
        base = self.settings.google_gmail_url.rstrip("/")
        started = await send_request(
            self.http,
            "The Gmail API",
            "POST",
            f"{base}/upload/gmail/v1/users/me/messages/send?uploadType=resumable",
            json={},
            headers={
                "Authorization": f"Bearer {access_token}",
                "X-Upload-Content-Type": "message/rfc822",
                "X-Upload-Content-Length": str(len(mime)),
            },
        )
        mail_api_answer(started, "Gmail", address)
        session = started.headers.get("location", "")
        if not session.startswith(f"{base}/"):
            raise TransientMailError("The Gmail API did not open an upload session; retrying.")
        response = await send_request(
            self.http,
            "The Gmail API",
            "PUT",
            session,
            content=mime,
            headers={"Authorization": f"Bearer {access_token}", "Content-Type": "message/rfc822"},
        )
        mail_api_answer(response, "Gmail", address)
        return str(response.json().get("id", ""))


def _said(exc: Exception) -> str:
    """What Google's token endpoint said: google-auth puts its answer in the exception's args
    ("invalid_grant: Token has been expired or revoked.", then the JSON)."""
    first = str(exc.args[0]) if exc.args else str(exc)
    return first.split("\n")[0][:200]


def _id_token_claims(id_token: str) -> dict[str, Any]:
    """The claims of an id_token received directly from the token endpoint over TLS.

    OpenID Connect allows skipping the signature check for a token obtained this way.
    """
    try:
        payload = id_token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
