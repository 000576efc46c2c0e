"""Reading a connected mailbox, for mailbox sync (core/inbound_paths/sync.py decides what is
imported; activities/inbound_paths.py stores it).

- Microsoft Graph: delta queries on the inbox (`mailFolders('inbox')/messages/delta`, created
  messages only, `$filter=receivedDateTime ge …` for a bounded first read), a message's
  headers (`$select=internetMessageHeaders`), its MIME (`/$value`), and a change-notification
  subscription on the inbox's messages.
- Gmail: `users.history.list` (messageAdded, INBOX) from a history id, `users.messages.list`
  for a bounded read of the last days, `format=metadata` for the headers and `format=raw` for
  the MIME, and `users.watch` for Pub/Sub pushes.

A cursor is an opaque string the reader gave: Graph's next or delta link; for Gmail a history
id, or a resync's page. An expired one raises CursorExpired: read the last days again.
"""

from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from core.errors import AuthExpiredError, PermanentMailError
from core.inbound_paths.sync import Summary
from providers.http import HttpClients, error_text, raise_for_answer, send_request

# The headers mailbox sync decides by (and nothing else is read before it decides).
SUMMARY_HEADERS = (
    "From",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "X-Recruitmail-Check",
    "Auto-Submitted",
)
# Graph: an Outlook message subscription lives at most 10,080 minutes (under 7 days).
GRAPH_MAX_LIFETIME = timedelta(minutes=10_080)
PAGE_SIZE = 50


class CursorExpired(PermanentMailError):
    """The provider no longer knows the cursor (Graph 410, Gmail 404): read again."""


@dataclass(frozen=True)
class MailRef:
    id: str
    received_at: datetime | None = None
    # The deciding headers, when the change list carried them (Graph's delta does).
    summary: Summary | None = None


@dataclass(frozen=True)
class ChangePage:
    refs: list[MailRef]
    cursor: str  # where the next read starts; saved once these are stored
    done: bool  # no more pages now (the cursor waits for new mail)


@dataclass(frozen=True)
class Channel:
    """A notification channel: a Graph subscription, or a Gmail watch."""

    id: str
    expires_at: datetime


def _summary(pairs: list[tuple[str, str]], received_at: datetime | None) -> Summary:
    wanted = {h.lower() for h in SUMMARY_HEADERS}
    headers: dict[str, list[str]] = {}
    for name, value in pairs:
        key = name.lower()
        if key in wanted:
            headers.setdefault(key, []).append(str(value)[:16_384])
    return Summary(headers, received_at)


def _headers(item: dict[str, Any], received: datetime | None) -> Summary | None:
    """A Graph message's internetMessageHeaders as a Summary (None when not returned)."""
    found = item.get("internetMessageHeaders")
    if not isinstance(found, list):
        return None
    pairs = [(str(h.get("name", "")), str(h.get("value", ""))) for h in found]
    return _summary(pairs, received)


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


class MailboxReader(ABC):
    service: str = ""

    def __init__(self, http: HttpClients, base_url: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")

    async def _get(self, token: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        response = await send_request(
            self._http, self.service, "GET", url, headers=headers, **kwargs
        )
        self._check(response)
        return response

    def _check(self, response: httpx.Response) -> None:
        raise_for_answer(
            response,
            self.service,
            unauthorized=lambda detail: AuthExpiredError(
                f"{self.service} no longer accepts the mailbox's sign-in ({detail})."
            ),
            forbidden=lambda detail: AuthExpiredError(
                f"{self.service} does not let Recruitmail read this mailbox ({detail}): the "
                "read permission was not granted or was withdrawn."
            ),
        )

    @abstractmethod
    async def changes(self, token: str, cursor: str, since: datetime) -> ChangePage:
        """The next page of messages added to the inbox after `cursor` (empty: since
        `since`)."""

    @abstractmethod
    async def summary(self, token: str, ref: MailRef) -> Summary: ...

    @abstractmethod
    async def raw(self, token: str, ref: MailRef) -> bytes: ...

    @abstractmethod
    async def open_channel(self, token: str, target: str, secret: str) -> Channel:
        """Ask the provider to notify `target` of new mail (Graph: a URL with the secret as
        clientState; Gmail: a Pub/Sub topic)."""

    @abstractmethod
    async def renew_channel(self, token: str, channel: Channel) -> Channel: ...


class GraphReader(MailboxReader):
    """`user`: read /users/{user}/… with an application's token (Exchange's RBAC for
    Applications scopes it to that mailbox), or a shared mailbox with the signed-in user's
    delegated Mail.Read.Shared (`delegate`: who signed in); None: /me, with the signed-in
    user's token."""

    service = "Microsoft Graph"

    def __init__(
        self, http: HttpClients, base_url: str, user: str | None = None, delegate: str = ""
    ) -> None:
        super().__init__(http, base_url)
        self._who = f"users/{quote(user, safe='@')}" if user else "me"
        self._user, self._delegate = user or "", delegate

    def _check(self, response: httpx.Response) -> None:
        if response.status_code == 403 and self._delegate:
            raise AuthExpiredError(
                f"Microsoft 365 does not let {self._delegate} read the shared mailbox "
                f"{self._user} ({error_text(response)}). An Exchange administrator gives "
                f"{self._delegate} Full Access on it: Exchange admin center → Recipients → "
                f"Mailboxes → {self._user} → Delegation → Read and manage (Full Access), or "
                f"`Add-MailboxPermission -Identity {self._user} -User {self._delegate} "
                "-AccessRights FullAccess -AutoMapping $false`; and the sign-in must grant "
                '"Read user and shared mail" (Mail.Read.Shared).'
            )
        super()._check(response)

    def _delta_url(self) -> str:
        return f"{self._base}/v1.0/{self._who}/mailFolders('inbox')/messages/delta"

    async def changes(self, token: str, cursor: str, since: datetime) -> ChangePage:
        if cursor:
            if not cursor.startswith(self._base + "/"):
                raise CursorExpired("The delta link is not Graph's; reading again.")
            url, params = cursor, None
        else:
            url = self._delta_url()
            params = {
                "changeType": "created",
                # The deciding headers come with the page: no call per message to decide.
                "$select": "id,receivedDateTime,internetMessageHeaders",
                "$filter": f"receivedDateTime ge {since.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
            }
        try:
            response = await self._get(
                token, url, params=params, headers={"Prefer": f"odata.maxpagesize={PAGE_SIZE}"}
            )
        except PermanentMailError as err:
            if "(410" in str(err) or "syncstate" in str(err).lower():
                raise CursorExpired(f"Graph no longer knows the delta link ({err}).") from err
            raise
        body = response.json()
        refs = [
            MailRef(
                str(item["id"]),
                _when(item.get("receivedDateTime")),
                _headers(item, _when(item.get("receivedDateTime"))),
            )
            for item in body.get("value", [])
            if "@removed" not in item and item.get("id")
        ]
        next_link = body.get("@odata.nextLink")
        if next_link:
            return ChangePage(refs, str(next_link), done=False)
        return ChangePage(refs, str(body.get("@odata.deltaLink", "")), done=True)

    def _message_url(self, ref: MailRef) -> str:
        return f"{self._base}/v1.0/{self._who}/messages/{quote(ref.id, safe='')}"

    async def summary(self, token: str, ref: MailRef) -> Summary:
        if ref.summary is not None:
            return ref.summary
        response = await self._get(
            token,
            self._message_url(ref),
            params={"$select": "internetMessageHeaders,receivedDateTime"},
        )
        body = response.json()
        received = _when(body.get("receivedDateTime")) or ref.received_at
        return _headers(body, received) or Summary(received_at=received)

    async def raw(self, token: str, ref: MailRef) -> bytes:
        response = await self._get(token, self._message_url(ref) + "/$value")
        return response.content

    async def open_channel(self, token: str, target: str, secret: str) -> Channel:
        expires = datetime.now(UTC) + GRAPH_MAX_LIFETIME - timedelta(minutes=60)
        body = {
            "changeType": "created",
            "notificationUrl": target,
            "lifecycleNotificationUrl": target,
            "resource": f"{self._who}/mailFolders('inbox')/messages",
            "expirationDateTime": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "clientState": secret,
        }
        response = await send_request(
            self._http,
            self.service,
            "POST",
            f"{self._base}/v1.0/subscriptions",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        self._check(response)
        created = response.json()
        return Channel(str(created["id"]), _when(created.get("expirationDateTime")) or expires)

    async def renew_channel(self, token: str, channel: Channel) -> Channel:
        expires = datetime.now(UTC) + GRAPH_MAX_LIFETIME - timedelta(minutes=60)
        response = await send_request(
            self._http,
            self.service,
            "PATCH",
            f"{self._base}/v1.0/subscriptions/{quote(channel.id, safe='')}",
            json={"expirationDateTime": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
            headers={"Authorization": f"Bearer {token}"},
        )
        if response.status_code == 404:
            raise CursorExpired("The subscription is gone; creating a new one.")
        self._check(response)
        return Channel(channel.id, _when(response.json().get("expirationDateTime")) or expires)


class GmailReader(MailboxReader):
    """Cursors: "h:<history id>" (history.list from it), or "r:<history id>:<page token>" while
    a bounded read of the last days pages through messages.list (the history id, taken before
    that read, is where reading goes on afterwards)."""

    service = "Gmail"

    def _url(self, path: str) -> str:
        return f"{self._base}/gmail/v1/users/me/{path}"

    async def changes(self, token: str, cursor: str, since: datetime) -> ChangePage:
        if cursor.startswith("h:"):
            return await self._history(token, cursor[2:])
        if cursor.startswith("r:"):
            history, _, page = cursor[2:].partition(":")
            return await self._resync(token, history, page, since)
        profile = (await self._get(token, self._url("profile"))).json()
        return await self._resync(token, str(profile["historyId"]), "", since)

    async def _history(self, token: str, start: str) -> ChangePage:
        params = {
            "startHistoryId": start,
            "historyTypes": "messageAdded",
            "labelId": "INBOX",
            "maxResults": str(PAGE_SIZE),
        }
        try:
            response = await self._get(token, self._url("history"), params=params)
        except PermanentMailError as err:
            if "(404" in str(err):
                raise CursorExpired(f"Gmail no longer has history from {start} ({err}).") from err
            raise
        body = response.json()
        refs: list[MailRef] = []
        last = start
        for record in body.get("history") or []:
            last = str(record.get("id", last))
            for added in record.get("messagesAdded") or []:
                message = added.get("message") or {}
                if "INBOX" in (message.get("labelIds") or ["INBOX"]) and message.get("id"):
                    refs.append(MailRef(str(message["id"])))
        if body.get("nextPageToken"):
            # The records after `last` are the next page: history.list starts after its start.
            return ChangePage(refs, f"h:{last}", done=False)
        return ChangePage(refs, f"h:{body.get('historyId', last)}", done=True)

    async def _resync(self, token: str, history: str, page: str, since: datetime) -> ChangePage:
        params = {"q": f"in:inbox after:{int(since.timestamp())}", "maxResults": str(PAGE_SIZE)}
        if page:
            params["pageToken"] = page
        body = (await self._get(token, self._url("messages"), params=params)).json()
        refs = [MailRef(str(m["id"])) for m in body.get("messages") or [] if m.get("id")]
        following = body.get("nextPageToken")
        if following:
            return ChangePage(refs, f"r:{history}:{following}", done=False)
        return ChangePage(refs, f"h:{history}", done=False)  # then what came in meanwhile

    async def summary(self, token: str, ref: MailRef) -> Summary:
        params: list[tuple[str, str]] = [("format", "metadata")]
        params += [("metadataHeaders", h) for h in SUMMARY_HEADERS]
        body = (
            await self._get(token, self._url(f"messages/{quote(ref.id, safe='')}"), params=params)
        ).json()
        pairs = [
            (str(h.get("name", "")), str(h.get("value", "")))
            for h in (body.get("payload") or {}).get("headers") or []
        ]
        received = None
        if str(body.get("internalDate", "")).isdigit():
            received = datetime.fromtimestamp(int(body["internalDate"]) / 1000, UTC)
        return _summary(pairs, received)

    async def raw(self, token: str, ref: MailRef) -> bytes:
        url = self._url(f"messages/{quote(ref.id, safe='')}")
        body = (await self._get(token, url, params={"format": "raw"})).json()
        data = str(body.get("raw", ""))
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))

    async def open_channel(self, token: str, target: str, secret: str) -> Channel:
        body = {"topicName": target, "labelIds": ["INBOX"], "labelFilterBehavior": "include"}
        response = await send_request(
            self._http,
            self.service,
            "POST",
            self._url("watch"),
            content=json.dumps(body),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        self._check(response)
        answer = response.json()
        millis = int(answer.get("expiration", 0) or 0)
        expires = datetime.fromtimestamp(millis / 1000, UTC) if millis else datetime.now(UTC)
        return Channel(target, expires)

    async def renew_channel(self, token: str, channel: Channel) -> Channel:
        return await self.open_channel(token, channel.id, "")  # watch again: Google's advice
