"""Microsoft 365: sign-in through msal (auth-code flow with PKCE), sending through Graph.

msal's constructor fetches the authority's metadata over the network, so the application is
built inside activities, never at import or in the API.
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import httpx
import msal

from core.errors import (
    AdminConsentRequiredError,
    AuthExpiredError,
    ConfigurationError,
    MailError,
    PermanentMailError,
    TransientMailError,
)
from core.inbound_paths.paths import READ_SCOPES
from core.throttle import Rate, rate_of
from providers import refusals
from providers.base import (
    Account,
    AdminConsentHelp,
    Grant,
    Identity,
    OAuthProvider,
    Outgoing,
    Secret,
    too_large,
)
from providers.http import mail_api_answer, send_request
from providers.mailbox import GraphReader

# msal adds openid, profile and offline_access itself (and refuses them when given).
# Mail.Send.Shared lets a signed-in user send from a shared mailbox they hold Send As and Full
# Access on, through /users/{shared}/sendMail, so the mail is saved in the shared mailbox's Sent
# Items (learn.microsoft.com/graph/outlook-send-mail-from-other-user); a delegated permission
# users may grant themselves.
SCOPES = ["Mail.Send", "Mail.Send.Shared", "User.Read"]
GRAPH = "https://graph.microsoft.com"
GRAPH_SCOPES = " ".join(f"{GRAPH}/{scope}" for scope in SCOPES)
# Large files: a message over Graph's 4 MB request goes as a draft with its files attached
# through upload sessions, then sent; drafts need Mail.ReadWrite (Mail.ReadWrite.Shared in a
# shared mailbox). Asked only of connections with large files on.
WRITE_SCOPES = ["Mail.ReadWrite", "Mail.ReadWrite.Shared"]
# Mailbox sync: read the signed-in mailbox (delegated; docs/connections.md has the
# application-permission alternative, scoped to one mailbox).
READ_SCOPE = READ_SCOPES["microsoft"]
# A shared mailbox is read with Mail.Read.Shared and Full Access on it (delegated; Graph's
# change notifications do not cover it, so its sync polls).
READ_SCOPES_ASKED = [READ_SCOPE, "Mail.Read.Shared"]
CONSENT_CODES = {65001, 90094, 90095}
DECLINED_CODES = {65004}
REVOKED_CODES = {700082, 70008, 50173}
CONDITIONAL_ACCESS_CODES = {53003}
CLIENT_SECRET_CODES = {7000215, 7000222}
_GENERIC_TENANTS = {"organizations", "common", "consumers"}
# Graph's limit on a REST request's size (learn.microsoft.com/graph/outlook-large-attachments:
# files over 3 MB need an upload session; 4 MB per request).
GRAPH_REQUEST_LIMIT = 4 * 1024 * 1024
# A file under this goes in one POST on the draft's attachments; a larger one through an
# upload session, in chunks of up to 4 MB that are multiples of 320 KiB (the last excepted).
GRAPH_SMALL_FILE = 3 * 1000 * 1000
UPLOAD_CHUNK = 10 * 320 * 1024
# Exchange Online's default maximum message size, files included (35 MB; a tenant may set its
# own: learn.microsoft.com/graph/api/attachment-createuploadsession).
GRAPH_MESSAGE_LIMIT = 35 * 1024 * 1024
_AADSTS = re.compile(r"AADSTS(\d+)")


def error_codes(result: dict) -> set[int]:
    codes = {int(c) for c in result.get("error_codes") or [] if str(c).isdigit()}
    codes.update(int(c) for c in _AADSTS.findall(str(result.get("error_description", ""))))
    return codes


def classify(result: dict) -> Exception:
    """The MailError an msal error answer means, worded for the admin connecting."""
    codes = error_codes(result)
    error = str(result.get("error", ""))
    description = str(result.get("error_description", "")).split("\r\n")[0][:300]
    known = next(
        (row for code in sorted(codes) if (row := refusals.find(f"AADSTS{code}", "microsoft"))),
        None,
    )
    if codes & CONSENT_CODES or error == "consent_required":
        row = refusals.find("AADSTS90094", "microsoft")
        assert row is not None
        return AdminConsentRequiredError(row.explain(description or error, address="this mailbox"))
    if codes & DECLINED_CODES or error == "access_denied":
        return PermanentMailError(
            "The sign-in was declined. Start the connection again and accept the permissions "
            "Recruitmail asks for."
        )
    if known is not None and known.answer == "AADSTS700016":
        return ConfigurationError(known.explain(description))
    if known is not None and known.answer == "AADSTS50076 / AADSTS50079":
        return AuthExpiredError(known.explain(description))
    if codes & CONDITIONAL_ACCESS_CODES and known is not None:
        return PermanentMailError(known.explain(description))
    if codes & CLIENT_SECRET_CODES or error in ("invalid_client", "unauthorized_client"):
        return ConfigurationError(
            "Microsoft refused Recruitmail's client credentials; an operator must update "
            "RECRUITMAIL_MICROSOFT_CLIENT_ID and RECRUITMAIL_MICROSOFT_CLIENT_SECRET."
        )
    if codes & REVOKED_CODES or error == "invalid_grant":
        return AuthExpiredError(
            "Microsoft no longer accepts the mailbox's sign-in (it expired or was revoked); "
            "reconnect the mailbox."
        )
    if error in ("temporarily_unavailable", "server_error"):
        return TransientMailError(f"Microsoft sign-in is temporarily unavailable ({description}).")
    return PermanentMailError(f"Microsoft refused the sign-in: {description or error}.")


_UNLICENSED = ("mailboxnotenabledforrestapi", "mailboxnotsupportedforrestapi", "erroraccessdenied")
_QUOTA = ("quota", "errorexceededmessagelimit", "sendquotaexceeded")


def explain_graph_refusal(
    err: PermanentMailError, address: str, mailbox: str = ""
) -> PermanentMailError:
    """Graph's refusals that an admin can act on, in words; others pass through. `mailbox` is
    the signed-in mailbox when it sends from another one (a shared mailbox)."""
    said = str(err).lower()
    if isinstance(err, AuthExpiredError):
        return err
    other = mailbox and mailbox.lower() != address.lower()
    if other and "erroraccessdenied" in said:
        row = refusals.find(str(err), "microsoft")
        if row is not None and row.answer == "ErrorAccessDenied (shared mailbox)":
            return PermanentMailError(row.explain(str(err), address=address, mailbox=mailbox))
    known = refusals.find(str(err), "microsoft")
    if known is not None and known.answer in ("MailboxNotEnabledForRESTAPI", "ErrorSendAsDenied"):
        names = {"address": address, **({"mailbox": mailbox} if other else {})}
        return PermanentMailError(known.explain(str(err), **names))
    if any(code in said for code in _UNLICENSED):
        row = refusals.find("MailboxNotEnabledForRESTAPI", "microsoft")
        assert row is not None
        return PermanentMailError(row.explain(str(err), address=address))
    if any(code in said for code in _QUOTA):
        return PermanentMailError(
            f"Microsoft 365 refused to send from {address} because its sending quota is used "
            f"up. Wait for the quota to reset (usually 24 hours), then test again. ({err})"
        )
    return err


@dataclass(frozen=True)
class File:
    """A file the draft gets apart: its bytes taken out of the MIME (`data`), or still in
    storage (`source`, read a chunk at a time)."""

    name: str
    content_type: str
    data: bytes = b""
    size: int = -1
    source: Callable[[], AsyncIterator[bytes]] | None = None

    @property
    def length(self) -> int:
        return len(self.data) if self.size < 0 else self.size

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.source is None:
            yield self.data
            return
        async for chunk in self.source():
            yield chunk


def split_files(mime: bytes, keep_under: int) -> tuple[bytes, list[File]]:
    """The message without its largest attached files, byte for byte otherwise, so that what
    stays base64-encodes under Graph's request limit; and the files taken out. Only the top
    level's `Content-Disposition: attachment` parts move (the text, HTML and inline images
    stay). Reads header blocks only and decodes each file once, from a view of the message."""
    newline = b"\r\n" if b"\r\n" in mime[:2048] else b"\n"
    blank = newline + newline
    head = _headers(mime[: mime.find(blank) + len(blank)])
    boundary = head.get_boundary()
    if head.get_content_maintype() != "multipart" or not boundary:
        return mime, []
    delimiter = newline + b"--" + boundary.encode()
    starts = list(_find_all(mime, delimiter))
    if not starts:
        return mime, []
    closing = next((i for i in starts if mime.startswith(delimiter + b"--", i)), len(mime))
    bounds = [i for i in starts if i < closing] + [closing]
    view = memoryview(mime)
    movable = []
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        headers_at = mime.find(newline, start + len(delimiter)) + len(newline)
        body_at = mime.find(blank, headers_at, end)
        if body_at == -1:
            continue
        headers = _headers(mime[headers_at : body_at + len(blank)])
        if headers.get_content_disposition() == "attachment":
            movable.append((end - start, index, headers, body_at + len(blank)))
    taken: dict[int, File] = {}
    size = len(mime)
    for length, index, headers, body_at in sorted(movable, key=lambda m: m[:2], reverse=True):
        if size < keep_under:
            break
        body = view[body_at : bounds[index + 1]]
        encoding = str(headers.get("Content-Transfer-Encoding", "")).strip().lower()
        data = base64.b64decode(body) if encoding == "base64" else bytes(body)
        taken[index] = File(
            headers.get_filename() or "attachment", headers.get_content_type(), data
        )
        size -= length
    if not taken:
        return mime, []
    kept = b"".join(
        view[start:end] for index, (start, end) in enumerate(itertools.pairwise(bounds))
        if index not in taken
    )  # fmt: skip
    return bytes(view[: bounds[0]]) + kept + bytes(view[closing:]), [
        taken[i] for i in sorted(taken)
    ]


async def _rechunked(pieces: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """`pieces` again in chunks of exactly `size` bytes (the last one shorter): an upload
    session takes multiples of 320 KiB."""
    held = bytearray()
    async for piece in pieces:
        held += piece
        while len(held) >= size:
            yield bytes(held[:size])
            del held[:size]
    if held:
        yield bytes(held)


def _headers(block: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(block, headersonly=True)


def _find_all(data: bytes, needle: bytes) -> Iterator[int]:
    at = data.find(needle)
    while at != -1:
        yield at
        at = data.find(needle, at + len(needle))


class MicrosoftProvider(OAuthProvider):
    """A Microsoft 365 mailbox: msal sign-in, Graph sendMail with the raw MIME."""

    kind: ClassVar[str] = "microsoft"
    label: ClassVar[str] = "Microsoft"
    # Microsoft's admin-consent endpoint calls us back, with a state of its own.
    consent_link: ClassVar[bool] = True
    # Graph sends as another address only for a mailbox with Send As rights on it.
    send_as_proven_by_sending: ClassVar[bool] = True
    # Graph runs at most four requests at once against one mailbox (MailboxConcurrency).
    concurrent_per_mailbox: ClassVar[int] = 4

    def rate(self) -> Rate:
        return rate_of("microsoft", self.settings)

    @property
    def authority(self) -> str:
        return (
            f"{self.settings.microsoft_authority_host.rstrip('/')}/{self.settings.microsoft_tenant}"
        )

    def _app(self, cache: msal.SerializableTokenCache | None = None):
        try:
            return msal.ConfidentialClientApplication(
                self.settings.microsoft_client_id,
                client_credential=self.settings.microsoft_client_secret,
                authority=self.authority,
                token_cache=cache,
                http_client=self.http.session(),
                instance_discovery=False,
                timeout=self.settings.oauth_http_timeout_seconds,
            )
        except ValueError as exc:  # msal's wording for an unreachable or wrong authority
            raise ConfigurationError(
                f"The Microsoft authority {self.authority} could not be used: {exc}"
            ) from exc
        except OSError as exc:
            raise TransientMailError(f"Microsoft sign-in is unreachable ({exc}).") from exc

    read_scope: ClassVar[str] = READ_SCOPE

    application_read: ClassVar[bool] = True

    def reader(self, user: str | None = None, delegate: str = "") -> GraphReader:
        return GraphReader(self.http, self.settings.microsoft_graph_url, user, delegate)

    def application_token(self, secret: Secret) -> str:
        """Client credentials for the tenant the mailbox signed in from (its id is in the
        stored sign-in): Graph then allows what the tenant's admin granted the application,
        within the mailboxes Exchange's RBAC for Applications scopes it to."""
        cache = msal.SerializableTokenCache()
        cache.deserialize(secret.get("token_cache") or "{}")
        accounts = self._app(cache).get_accounts()
        # home_account_id is "{object id}.{tenant id}" (the realm may be "organizations").
        home = str(accounts[0].get("home_account_id", "")) if accounts else ""
        tenant = home.partition(".")[2]
        if not tenant:
            raise AuthExpiredError("No Microsoft sign-in is stored; reconnect the mailbox.")
        host = self.settings.microsoft_authority_host.rstrip("/")
        try:
            app = msal.ConfidentialClientApplication(
                self.settings.microsoft_client_id,
                client_credential=self.settings.microsoft_client_secret,
                authority=f"{host}/{tenant}",
                http_client=self.http.session(),
                instance_discovery=False,
                timeout=self.settings.oauth_http_timeout_seconds,
            )
            result = app.acquire_token_for_client([f"{GRAPH}/.default"])
        except ValueError as exc:
            raise ConfigurationError(f"The Microsoft authority could not be used: {exc}") from exc
        except OSError as exc:
            raise TransientMailError(f"Microsoft sign-in is unreachable ({exc}).") from exc
        if "access_token" not in result:
            raise classify(result)
        return str(result["access_token"])

    def authorization_url(
        self, state: str, login_hint: str, read: bool = False, write: bool = False
    ) -> tuple[str, Secret]:
        flow = self._app().initiate_auth_code_flow(
            SCOPES + (READ_SCOPES_ASKED if read else []) + (WRITE_SCOPES if write else []),
            redirect_uri=self.settings.oauth_redirect_uri(self.kind),
            state=state,
            login_hint=login_hint,
        )  # no prompt: never prompt=consent, which would ask users for admin-only consent
        return flow["auth_uri"], flow

    def exchange_code(self, flow: Secret, query: dict[str, str]) -> Grant:
        cache = msal.SerializableTokenCache()
        app = self._app(cache)
        try:
            result = app.acquire_token_by_auth_code_flow(flow, query)
        except ValueError as exc:
            raise PermanentMailError(
                "The sign-in answer does not belong to this setup; start the sign-in again."
            ) from exc
        if "error" in result:
            raise classify(result)
        scopes = result.get("scope") or []
        scopes = scopes.split() if isinstance(scopes, str) else list(scopes)
        if not any(s.lower().rsplit("/", 1)[-1] == "mail.send" for s in scopes):
            raise PermanentMailError(
                "The 'Send mail as you' permission (Mail.Send) was not granted, so Recruitmail "
                "cannot send from this mailbox. Sign in again and keep it selected."
            )
        identity = self.identity(result["access_token"], "")
        granted = tuple(s.rsplit("/", 1)[-1] for s in scopes)
        return Grant(secret={"token_cache": cache.serialize()}, identity=identity, scopes=granted)

    def identity(self, access_token: str, address: str) -> Identity:
        """The signed-in mailbox and its proxy addresses, from Graph /me (User.Read)."""
        session = self.http.session()
        url = (
            f"{self.settings.microsoft_graph_url.rstrip('/')}/v1.0/me"
            "?$select=mail,userPrincipalName,proxyAddresses"
        )
        try:
            response = session.get(
                url,
                headers={"Authorization": f"Bearer {access_token}"},
                timeout=self.settings.oauth_http_timeout_seconds,
            )
        except OSError as exc:
            raise TransientMailError(f"Microsoft Graph is unreachable ({exc}).") from exc
        if response.status_code != 200:
            raise PermanentMailError(
                f"Microsoft Graph did not show the signed-in mailbox ({response.status_code})."
            )
        me = response.json()
        mailbox = str(me.get("mail") or me.get("userPrincipalName") or "").lower()
        # "SMTP:primary@…" and "smtp:alias@…": every address Exchange delivers to this mailbox.
        aliases = tuple(
            str(p).split(":", 1)[1].lower()
            for p in me.get("proxyAddresses") or []
            if str(p).lower().startswith("smtp:")
        )
        return Identity(mailbox, aliases)

    def refresh(self, secret: Secret, read: bool = False) -> tuple[str, Secret | None]:
        """A fresh access token; the new secret too when msal refreshed (save it)."""
        cache = msal.SerializableTokenCache()
        cache.deserialize(secret.get("token_cache") or "{}")
        app = self._app(cache)
        accounts = app.get_accounts()
        if not accounts:
            raise AuthExpiredError("No Microsoft sign-in is stored; reconnect the mailbox.")
        # Mail.Send alone: the token Microsoft issues carries every permission the mailbox
        # granted, and asking for one it did not grant (Mail.Send.Shared, for an older sign-in)
        # would fail the refresh.
        scopes = [READ_SCOPE] if read else ["Mail.Send"]
        result = app.acquire_token_silent_with_error(scopes, account=accounts[0])
        if result is None:
            raise AuthExpiredError("The Microsoft sign-in has expired; reconnect the mailbox.")
        if "access_token" not in result:
            error = classify(result)
            if isinstance(error, PermanentMailError) and not isinstance(
                error, (AuthExpiredError, ConfigurationError)
            ):
                error = AuthExpiredError(f"{error} Reconnect the mailbox.")
            raise error
        changed = {"token_cache": cache.serialize()} if cache.has_state_changed else None
        return result["access_token"], changed

    async def post_mime(
        self,
        access_token: str,
        address: str,
        mime: bytes,
        mailbox: str = "",
        scopes: tuple[str, ...] = (),
    ) -> str:
        """Graph sendMail with the raw MIME, so our Message-ID survives. 202 means queued.
        Through /users/{address}: from a shared mailbox, the signed-in `mailbox` sends with
        Mail.Send.Shared and the mail is saved in the shared mailbox's Sent Items.

        A request to Graph carries at most 4 MB, and the MIME goes base64-encoded (4/3 of its
        size): a larger message fails here, before any request, with the reason (larger files
        need an upload session: docs/connections.md, Limits)."""
        if (len(mime) + 2) // 3 * 4 > GRAPH_REQUEST_LIMIT:  # its base64, not made for nothing
            if len(mime) > GRAPH_MESSAGE_LIMIT:
                raise PermanentMailError(
                    too_large(len(mime), GRAPH_MESSAGE_LIMIT, "Microsoft 365", " for this mailbox")
                )
            if "Mail.ReadWrite" not in scopes:
                raise PermanentMailError(
                    too_large(
                        len(mime),
                        GRAPH_REQUEST_LIMIT * 3 // 4,
                        "Microsoft 365 through Graph's sendMail",
                        " (its 4 MB request limit, the message base64-encoded). Larger "
                        "messages go as a draft with upload sessions once large files are on "
                        "for this connection (PUT /v1/connections/{id}/large-files), which asks "
                        "the mailbox for the Read and write mail permission",
                    )
                )
            return await self._send_as_draft(access_token, address, mime, mailbox)
        return await self._send_mail(
            access_token, address, mime, lambda err: explain_graph_refusal(err, address, mailbox)
        )

    def takes_files(self, account: Account) -> bool:
        # A draft and upload sessions: the delegated sign-in, with Mail.ReadWrite.
        return not account.application and "Mail.ReadWrite" in account.scopes

    async def post_with_files(
        self, access_token: str, address: str, mail: Outgoing, mailbox: str, scopes: tuple[str, ...]
    ) -> str:
        """A message whose files are in storage: under Graph's request limit it goes whole,
        through sendMail, as any other; above it, its MIME without the files becomes the
        draft and each file goes from storage, a chunk at a time, into an upload session."""
        size = mail.size
        if (size + 2) // 3 * 4 <= GRAPH_REQUEST_LIMIT or "Mail.ReadWrite" not in scopes:
            whole = await mail.whole()
            return await self.post_mime(access_token, address, whole.mime, mailbox, scopes)
        if size > GRAPH_MESSAGE_LIMIT:
            raise PermanentMailError(
                too_large(size, GRAPH_MESSAGE_LIMIT, "Microsoft 365", " for this mailbox")
            )
        files = [File(f.filename, f.content_type, size=f.size, source=f.read) for f in mail.files]
        return await self._send_as_draft(access_token, address, mail.mime, mailbox, files)

    async def post_mime_as_application(self, access_token: str, address: str, mime: bytes) -> str:
        """sendMail with Recruitmail's own application token (Mail.Send, scoped by the tenant's
        admin to the mailbox with RBAC for Applications). One request only: drafts and upload
        sessions for larger files go with the delegated sign-in."""
        if (len(mime) + 2) // 3 * 4 > GRAPH_REQUEST_LIMIT:
            raise PermanentMailError(
                too_large(
                    len(mime),
                    GRAPH_REQUEST_LIMIT * 3 // 4,
                    "Microsoft 365 through Graph's sendMail with the application permission",
                    " (its 4 MB request limit, the message base64-encoded). Larger messages go "
                    "as a draft with upload sessions, which needs the delegated sign-in: switch "
                    "the connection to delegated sending (PUT /v1/connections/{id}/send-mode) "
                    "with large files on",
                )
            )

        def explain(err: PermanentMailError) -> PermanentMailError:
            if isinstance(err, AuthExpiredError) or "erroraccessdenied" not in str(err).lower():
                return explain_graph_refusal(err, address)
            row = refusals.row("ErrorAccessDenied (application permission)")
            return PermanentMailError(
                row.explain(str(err), address=address, client_id=self.settings.microsoft_client_id)
            )

        return await self._send_mail(access_token, address, mime, explain)

    async def _send_mail(
        self,
        access_token: str,
        address: str,
        mime: bytes,
        explain: Callable[[PermanentMailError], PermanentMailError],
    ) -> str:
        body = base64.b64encode(mime)
        url = (
            f"{self.settings.microsoft_graph_url.rstrip('/')}/v1.0/users/"
            f"{quote(address, safe='@')}/sendMail"
        )
        response = await send_request(
            self.http,
            "Microsoft Graph",
            "POST",
            url,
            content=body,
            headers={"Authorization": f"Bearer {access_token}", "Content-Type": "text/plain"},
        )
        try:
            mail_api_answer(response, "Microsoft Graph", address)
        except PermanentMailError as err:
            raise explain(err) from err
        return response.headers.get("request-id", "")

    async def _send_as_draft(
        self,
        access_token: str,
        address: str,
        mime: bytes,
        mailbox: str = "",
        files: list[File] | None = None,
    ) -> str:
        """A message over Graph's 4 MB request: the MIME without its largest files becomes a
        draft (our Message-ID and threading headers kept), each file taken out is attached
        (one POST under 3 MB, else an upload session in chunks), then the draft is sent.
        `files`: the MIME is already without them (they are in storage)."""
        if files is None:
            draft, files = split_files(mime, GRAPH_REQUEST_LIMIT * 3 // 4 - 64 * 1024)
        else:
            draft = mime
        base = (
            f"{self.settings.microsoft_graph_url.rstrip('/')}/v1.0/users/"
            f"{quote(address, safe='@')}/messages"
        )
        auth = {"Authorization": f"Bearer {access_token}"}

        async def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
            response = await send_request(self.http, "Microsoft Graph", method, url, **kwargs)
            try:
                mail_api_answer(response, "Microsoft Graph", address)
            except PermanentMailError as err:
                raise explain_graph_refusal(err, address, mailbox) from err
            return response

        created = await call(
            "POST",
            base,
            content=base64.b64encode(draft),
            headers={**auth, "Content-Type": "text/plain"},
        )
        draft_id = quote(str(created.json().get("id", "")), safe="")
        try:
            return await self._attach_and_send(call, base, draft_id, auth, files)
        except MailError:
            # A failed attempt leaves no draft behind in the mailbox (a retry makes its own).
            try:
                await send_request(
                    self.http, "Microsoft Graph", "DELETE", f"{base}/{draft_id}", headers=auth
                )
            except MailError:
                pass  # unreachable now: the draft stays, the retry goes on regardless
            raise

    async def _attach_and_send(
        self,
        call: Callable[..., Awaitable[httpx.Response]],
        base: str,
        draft_id: str,
        auth: dict[str, str],
        files: list[File],
    ) -> str:
        for file in files:
            total = file.length
            if total < GRAPH_SMALL_FILE:
                data = b"".join([chunk async for chunk in file.chunks()])
                await call(
                    "POST",
                    f"{base}/{draft_id}/attachments",
                    json={
                        "@odata.type": "#microsoft.graph.fileAttachment",
                        "name": file.name,
                        "contentType": file.content_type,
                        "contentBytes": base64.b64encode(data).decode(),
                    },
                    headers=auth,
                )
                continue
            session = await call(
                "POST",
                f"{base}/{draft_id}/attachments/createUploadSession",
                json={
                    "AttachmentItem": {
                        "attachmentType": "file",
                        "name": file.name,
                        "size": total,
                        "contentType": file.content_type,
                    }
                },
                headers=auth,
            )
            upload_url = str(session.json().get("uploadUrl", ""))
            if not upload_url.startswith("https://"):
                raise TransientMailError("Microsoft Graph did not open an upload session.")
            start = 0
            async for chunk in _rechunked(file.chunks(), UPLOAD_CHUNK):
                # The upload URL carries its own authorization: no Authorization header.
                await call(
                    "PUT",
                    upload_url,
                    content=chunk,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{total}",
                    },
                )
                start += len(chunk)
            if start != total:
                raise PermanentMailError(
                    f"The file {file.name} read back {start} bytes of {total}: it was not sent."
                )
        sent = await call("POST", f"{base}/{draft_id}/send", headers=auth)
        return sent.headers.get("request-id", "")

    def admin_consent_help(
        self, connection_id: str, address: str, state: str, read: bool = False, write: bool = False
    ) -> AdminConsentHelp:
        return AdminConsentHelp(
            admin_consent_url=self.admin_consent_url(address, state, read, write)
        )

    def admin_consent_url(
        self, custom_address: str, state: str, read: bool = False, write: bool = False
    ) -> str:
        """The tenant's admin-consent link, for the person connecting to forward to an admin."""
        tenant = self.settings.microsoft_tenant
        if tenant in _GENERIC_TENANTS:
            tenant = custom_address.rpartition("@")[2]  # a verified domain names the tenant
        query = urlencode(
            {
                "client_id": self.settings.microsoft_client_id,
                "scope": " ".join(
                    [GRAPH_SCOPES]
                    + ([f"{GRAPH}/{scope}" for scope in READ_SCOPES_ASKED] if read else [])
                    + ([f"{GRAPH}/{scope}" for scope in WRITE_SCOPES] if write else [])
                ),
                "redirect_uri": self.settings.admin_consent_redirect_uri(),
                "state": state,
            }
        )
        host = self.settings.microsoft_authority_host.rstrip("/")
        return f"{host}/{tenant}/v2.0/adminconsent?{query}"
