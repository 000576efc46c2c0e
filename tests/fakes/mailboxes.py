"""The mailboxes behind the Microsoft and Google fakes: what mailbox sync reads.

They behave as the real APIs do, in the parts Recruitmail uses (the references are in
docs/connections.md):

- Graph: `GET /v1.0/me/mailFolders/inbox/messages/delta` (a `$filter` on receivedDateTime only,
  `changeType=created`, pages of `Prefer: odata.maxpagesize` or 10 with `@odata.nextLink`, a
  round ending in `@odata.deltaLink`; an expired link answers 410 `SyncStateNotFound`),
  `GET /v1.0/me/messages/{id}` with `$select=internetMessageHeaders`, `/$value` for the MIME,
  and subscriptions: the validation handshake (the notification URL must echo the token within
  10 seconds), a lifetime of at most 10,080 minutes, a clientState of at most 128 characters,
  PATCH to renew, DELETE, change notifications, and lifecycle notifications.
- Gmail: `users.getProfile`, `users.history.list` (404 when the start is too old),
  `users.messages.list` with `q`, `users.messages.get` (`format=metadata` or `raw`),
  `users.watch` (a week's expiration), and Pub/Sub pushes whose OIDC token is signed with the
  fake's own key, whose certificates it serves at `/oauth2/v1/certs`.
- Both: reading needs the read scope in the token (403 otherwise); `throttle_reads` answers
  429 with `Retry-After`.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import unquote

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

Answer = tuple[int, dict, Any]
GRAPH_MAX_LIFETIME = timedelta(minutes=10_080)
GRAPH_PAGE = 10


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class StoredMail:
    id: str
    raw: bytes
    seq: int  # Gmail's history id; Graph's change order
    received: datetime


@dataclass
class FakeMailbox:
    address: str
    mails: list[StoredMail] = field(default_factory=list)
    seq: int = 1000
    oldest_history: int = 0  # history ids at or before this are gone (Gmail: 404)


def reply(
    sender: str,
    to: str,
    subject: str = "Re: Your application",
    text: str = "Thanks, Tuesday works for me.",
    in_reply_to: str = "",
) -> bytes:
    """A message as a candidate's client writes it."""
    headers = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {formatdate(usegmt=True)}",
        f"Message-ID: {make_msgid(domain=sender.rpartition('@')[2] or 'example.com')}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    if in_reply_to:
        headers += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
    return ("\r\n".join(headers) + "\r\n\r\n" + text + "\r\n").encode()


class Mailboxes:
    """The mail kept by one fake, by lower-cased address."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.boxes: dict[str, FakeMailbox] = {}
        self.throttle_reads = 0  # the next N reads answer 429 Retry-After: 1
        self.reads = 0
        self.raw_delay = 0.0  # seconds each MIME download takes (a slow mailbox)

    def box(self, address: str) -> FakeMailbox:
        with self.lock:
            return self.boxes.setdefault(address.lower(), FakeMailbox(address.lower()))

    def place(self, address: str, raw: bytes, received: datetime | None = None) -> StoredMail:
        box = self.box(address)
        with self.lock:
            box.seq += 1
            mail = StoredMail(
                id=secrets.token_hex(12),
                raw=raw,
                seq=box.seq,
                received=(received or datetime.now(UTC)).replace(microsecond=0),
            )
            box.mails.append(mail)
        return mail

    def throttled(self) -> Answer | None:
        with self.lock:
            self.reads += 1
            if self.throttle_reads > 0:
                self.throttle_reads -= 1
                return 429, {"Retry-After": "1"}, {"error": {"code": "TooManyRequests"}}
        return None


_FORM = """<!doctype html><meta name="viewport" content="width=device-width">
<title>Place a reply in a fake mailbox</title>
<h1>Place a message in a fake mailbox</h1>
<p>As if a candidate's reply arrived there; the sync reads it at its next notification or poll.
<form method="post">
<p><label>Mailbox <input name="to" size="40" required></label>
<p><label>From <input name="from" size="40" required></label>
<p><label>Subject <input name="subject" size="40" value="Re: Your application"></label>
<p><label>In-Reply-To <input name="in_reply_to" size="60"></label>
<p><label>Text<br><textarea name="text" rows="5" cols="60">Thanks, Tuesday works.</textarea>
</label><p><button>Place it</button></form>"""


def mailbox_form(method: str, body: bytes, place: Callable[[str, bytes], object]) -> Answer:
    """GET: a form to place a reply in a mailbox (for walking mailbox sync by hand); POST:
    place it."""
    if method == "POST":
        from urllib.parse import parse_qs

        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        raw = reply(
            form["from"], form["to"], form.get("subject", ""), form.get("text", ""),
            form.get("in_reply_to", ""),
        )  # fmt: skip
        place(form["to"], raw)
    page = _FORM + ("<p>Placed." if method == "POST" else "")
    return 200, {"Content-Type": "text/html; charset=utf-8"}, page.encode()


def _headers_of(raw: bytes) -> list[dict[str, str]]:
    message = message_from_bytes(raw)
    return [{"name": k, "value": str(v)} for k, v in message.items()]


def _post(url: str, payload: dict, headers: dict | None = None, verify: Any = False) -> int:
    try:
        response = httpx.post(url, json=payload, headers=headers or {}, timeout=10, verify=verify)
        return response.status_code
    except httpx.HTTPError:
        return 0


# -- Graph --------------------------------------------------------------------------------


@dataclass
class Subscription:
    id: str
    mailbox: str
    resource: str
    notification_url: str
    lifecycle_url: str
    client_state: str
    expires: datetime


class GraphMail:
    """Graph's mail reading, delta queries and subscriptions over a fake's mailboxes."""

    def __init__(
        self, base_url: Callable[[], str], full_access: Callable[[], list[str]] = list
    ) -> None:
        self._base = base_url
        # Shared mailboxes a signed-in user holds Full Access on: with Mail.Read.Shared it
        # reads /users/{that mailbox}/…, but cannot subscribe to its changes (Graph's
        # outlook-share-messages-folders: these permissions "don't support subscribing").
        self._full_access = full_access
        self.store = Mailboxes()
        self.generation = 1  # delta tokens of an older generation are expired (410)
        self.subscriptions: dict[str, Subscription] = {}
        self.notify = True  # send change notifications
        self.notified: list[dict] = []
        self.handshakes: list[str] = []

    def place(self, address: str, raw: bytes, received: datetime | None = None) -> StoredMail:
        mail = self.store.place(address, raw, received)
        if self.notify:
            for sub in list(self.subscriptions.values()):
                if sub.mailbox == address.lower():
                    threading.Thread(target=self._notify, args=(sub, mail), daemon=True).start()
        return mail

    def expire_cursors(self) -> None:
        """Every delta and next link handed out so far answers 410 from now on."""
        self.generation += 1

    def _notify(self, sub: Subscription, mail: StoredMail) -> None:
        item = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": _iso(sub.expires),
            "changeType": "created",
            "resource": f"Users/{sub.mailbox}/Messages/{mail.id}",
            "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": mail.id},
            "clientState": sub.client_state,
            "tenantId": "tenant-" + sub.mailbox.rpartition("@")[2],
        }
        self.notified.append(item)
        _post(sub.notification_url, {"value": [item]})

    def lifecycle(self, subscription_id: str, event: str) -> int:
        """A lifecycle notification (reauthorizationRequired, subscriptionRemoved, missed)."""
        sub = self.subscriptions[subscription_id]
        if event == "subscriptionRemoved":
            self.subscriptions.pop(subscription_id, None)
        item = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": _iso(sub.expires),
            "lifecycleEvent": event,
            "clientState": sub.client_state,
            "tenantId": "tenant-" + sub.mailbox.rpartition("@")[2],
        }
        return _post(sub.lifecycle_url or sub.notification_url, {"value": [item]})

    def handle(
        self, method: str, path: str, q: dict, body: bytes, headers: Any, who: tuple | None
    ) -> Answer | None:
        """Graph's mail and subscription routes; None for any other path. `who` is the
        bearer's (mailbox, scopes), or None."""
        if path == "/fake/mailbox":
            return mailbox_form(method, body, self.place)
        parts = path.strip("/").split("/")
        target = None  # the mailbox a /users/{address}/… path names
        mail_parts = ("mailFolders", "messages")
        if len(parts) >= 4 and parts[1] == "users" and parts[3].startswith(mail_parts):
            target = unquote(parts[2]).lower()
            parts = ["v1.0", "me", *parts[3:]]
            path = "/" + "/".join(parts)
        mailish = path.startswith("/v1.0/me/mailFolders") or path.startswith("/v1.0/me/messages")
        if not (mailish or path.startswith("/v1.0/subscriptions")):
            return None
        if who is None:
            return 401, {}, {"error": {"code": "InvalidAuthenticationToken"}}
        principal, scopes, allowed = who
        denied = 403, {}, {"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}}
        readers = ("mail.read", "mail.readwrite", "mail.read.shared", "mail.readwrite.shared")
        if not any(s.lower().endswith(readers) for s in scopes):
            return denied
        if path.startswith("/v1.0/subscriptions") and method == "POST":
            resource = str(json.loads(body or b"{}").get("resource", ""))
            if resource.lower().startswith("users/"):
                target = unquote(resource.split("/")[1]).lower()
        if allowed is not None:  # an application's token: Exchange's RBAC scope decides
            if target is None and not path.startswith("/v1.0/subscriptions/"):
                return 400, {}, {"error": {"code": "BadRequest", "message": "/me needs a user"}}
            if target is not None and target not in allowed:
                return denied
            mailbox = target or ""
        elif target is not None and target != principal.lower():
            shared = any(s.lower().endswith(".shared") for s in scopes)
            if not shared or target not in {a.lower() for a in self._full_access()}:
                return denied
            if path.startswith("/v1.0/subscriptions"):
                return denied  # no change notifications for a delegate's shared mailbox
            mailbox = target
        else:
            mailbox = principal
        throttled = self.store.throttled()
        if throttled:
            return throttled
        if path.startswith("/v1.0/subscriptions"):
            return self._subscriptions(method, path, body, mailbox)
        if path.endswith("/messages/delta"):
            return self._delta(mailbox, q, headers, target)
        if len(parts) >= 4 and parts[2] == "messages":
            found = next((m for m in self.store.box(mailbox).mails if m.id == parts[3]), None)
            if found is None:
                return 404, {}, {"error": {"code": "ErrorItemNotFound"}}
            if len(parts) == 5 and parts[4] == "$value":
                time.sleep(self.store.raw_delay)
                return 200, {"Content-Type": "text/plain"}, found.raw
            return 200, {}, self._message(found, q.get("$select", ""))
        return 404, {}, {"error": {"code": "ResourceNotFound"}}

    def _message(self, mail: StoredMail, select: str) -> dict:
        parsed = message_from_bytes(mail.raw)
        item: dict[str, Any] = {
            "id": mail.id,
            "receivedDateTime": _iso(mail.received),
            "internetMessageId": str(parsed.get("Message-ID", "")),
            "from": {"emailAddress": {"address": str(parsed.get("From", ""))}},
        }
        if "internetMessageHeaders" in select:  # returned only when selected
            item["internetMessageHeaders"] = _headers_of(mail.raw)
        return item

    def _token(self, payload: dict) -> str:
        return _b64url(json.dumps({"g": self.generation, **payload}).encode())

    def _delta(self, mailbox: str, q: dict, headers: Any, target: str | None = None) -> Answer:
        box = self.store.box(mailbox)
        size = GRAPH_PAGE
        prefer = headers.get("Prefer", "")
        if "odata.maxpagesize=" in prefer:
            size = max(1, int(prefer.split("odata.maxpagesize=")[1].split(",")[0]))
        token = q.get("$skiptoken") or q.get("$deltatoken")
        if token:
            state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            if state["g"] != self.generation:
                return (
                    410,
                    {},
                    {
                        "error": {
                            "code": "SyncStateNotFound",
                            "message": "The sync state generation is not found.",
                        }
                    },
                )
            after, since = state["after"], state.get("since", "")
            upto = state.get("upto") or box.seq
            select = state.get("select", "")
        else:
            after, since, upto = 0, "", box.seq
            select = q.get("$select", "")
            found = q.get("$filter", "")
            if found:
                if not found.startswith("receivedDateTime ge "):
                    return 400, {}, {"error": {"code": "ErrorInvalidUrlQueryFilter"}}
                since = found.removeprefix("receivedDateTime ge ").strip()
        with self.store.lock:
            mails = [m for m in box.mails if after < m.seq <= upto]
        if since:
            mails = [m for m in mails if m.received >= _parse_iso(since)]
        page, rest = mails[:size], mails[size:]
        who = f"users/{target}" if target else "me"
        base = f"{self._base()}/v1.0/{who}/mailFolders('inbox')/messages/delta"
        answer: dict[str, Any] = {"value": [self._message(m, select) for m in page]}
        # Graph encodes the query's options in its links.
        if rest:
            next_state = {"after": page[-1].seq, "upto": upto, "since": since, "select": select}
            answer["@odata.nextLink"] = f"{base}?$skiptoken={self._token(next_state)}"
        else:
            delta = {"after": upto, "select": select}
            answer["@odata.deltaLink"] = f"{base}?$deltatoken={self._token(delta)}"
        return 200, {}, answer

    def _subscriptions(self, method: str, path: str, body: bytes, mailbox: str) -> Answer:
        parts = path.strip("/").split("/")
        if method == "POST" and len(parts) == 2:
            return self._create(json.loads(body or b"{}"), mailbox)
        sub = self.subscriptions.get(parts[2]) if len(parts) > 2 else None
        if sub is None:
            return 404, {}, {"error": {"code": "ResourceNotFound", "message": "Not found"}}
        if method == "PATCH":
            expires = _parse_iso(json.loads(body)["expirationDateTime"])
            if expires - datetime.now(UTC) > GRAPH_MAX_LIFETIME:
                return 400, {}, {"error": {"code": "ExtensionError", "message": "Too long."}}
            sub.expires = expires
            return 200, {}, self._public(sub)
        if method == "DELETE":
            self.subscriptions.pop(sub.id, None)
            return 204, {}, b""
        return 200, {}, self._public(sub)

    def _create(self, request: dict, mailbox: str) -> Answer:
        expires = _parse_iso(request.get("expirationDateTime", ""))
        if expires - datetime.now(UTC) > GRAPH_MAX_LIFETIME:
            return (
                400,
                {},
                {
                    "error": {
                        "code": "ExtensionError",
                        "message": "Subscription expiration can only be 10070 minutes in the "
                        "future.",
                    }
                },
            )
        if len(request.get("clientState", "")) > 128:
            return 400, {}, {"error": {"code": "InvalidRequest", "message": "clientState"}}
        token = secrets.token_urlsafe(16)
        url = request["notificationUrl"]
        glue = "&" if "?" in url else "?"
        try:
            echoed = httpx.post(f"{url}{glue}validationToken={token}", timeout=10, verify=False)
            ok = echoed.status_code == 200 and echoed.text == token
            ok = ok and echoed.headers.get("content-type", "").startswith("text/plain")
        except httpx.HTTPError:
            ok = False
        self.handshakes.append(url)
        if not ok:
            return (
                400,
                {},
                {
                    "error": {
                        "code": "ValidationError",
                        "message": "Subscription validation request failed. Notification "
                        "endpoint must respond with 200 OK to validation request.",
                    }
                },
            )
        sub = Subscription(
            id=secrets.token_hex(8),
            mailbox=mailbox.lower(),
            resource=request.get("resource", ""),
            notification_url=url,
            lifecycle_url=request.get("lifecycleNotificationUrl", ""),
            client_state=request.get("clientState", ""),
            expires=expires,
        )
        self.subscriptions[sub.id] = sub
        return 201, {}, self._public(sub)

    def _public(self, sub: Subscription) -> dict:
        return {
            "id": sub.id,
            "resource": sub.resource,
            "changeType": "created",
            "notificationUrl": sub.notification_url,
            "expirationDateTime": _iso(sub.expires),
        }


# -- Gmail --------------------------------------------------------------------------------


class PushSigner:
    """The key Pub/Sub signs its push requests' OIDC tokens with, and its certificate."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)
        now = datetime.now(UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-pubsub")])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=2))
            .sign(self.key, hashes.SHA256())
        )

    def certs(self) -> dict[str, str]:
        return {self.kid: self.cert.public_bytes(serialization.Encoding.PEM).decode()}

    def token(self, claims: dict, key: rsa.RSAPrivateKey | None = None) -> str:
        header = _b64url(json.dumps({"alg": "RS256", "kid": self.kid, "typ": "JWT"}).encode())
        payload = _b64url(json.dumps(claims).encode())
        signing = f"{header}.{payload}".encode()
        signature = (key or self.key).sign(signing, padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{payload}.{_b64url(signature)}"


@dataclass
class Watch:
    mailbox: str
    topic: str
    expires: datetime


class GmailMail:
    """Gmail's history, messages and watch over a fake's mailboxes, and Pub/Sub's push."""

    service_account = "gmail-push@recruitmail-test.iam.gserviceaccount.com"

    def __init__(self) -> None:
        self.store = Mailboxes()
        self.signer = PushSigner()
        self.watches: dict[str, Watch] = {}
        self.push_url = ""  # the Pub/Sub subscription's push endpoint
        self.push_audience = ""
        self.notify = True
        self.pushed: list[dict] = []
        self.page_size = 100

    def place(self, address: str, raw: bytes, received: datetime | None = None) -> StoredMail:
        mail = self.store.place(address, raw, received)
        watch = self.watches.get(address.lower())
        if self.notify and watch is not None and self.push_url:
            threading.Thread(target=self.push, args=(address, mail.seq), daemon=True).start()
        return mail

    def expire_history(self, address: str) -> None:
        """History before now is gone: a start from it answers 404."""
        box = self.store.box(address)
        with self.store.lock:
            box.oldest_history = box.seq + 1

    def push(self, address: str, history_id: int, token: str | None = None) -> int:
        data = {"emailAddress": address.lower(), "historyId": history_id}
        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": self.push_audience or self.push_url,
            "azp": "1234567890",
            "email": self.service_account,
            "email_verified": True,
            "sub": "1234567890",
            "iat": now,
            "exp": now + 3600,
        }
        body = {
            "message": {
                "data": base64.b64encode(json.dumps(data).encode()).decode(),
                "messageId": secrets.token_hex(8),
                "publishTime": _iso(datetime.now(UTC)),
            },
            "subscription": "projects/recruitmail-test/subscriptions/gmail-push",
        }
        self.pushed.append(data)
        bearer = token if token is not None else self.signer.token(claims)
        return _post(self.push_url, body, {"Authorization": f"Bearer {bearer}"} if bearer else {})

    def handle(
        self, method: str, path: str, q: dict, body: bytes, headers: Any, who: tuple | None
    ) -> Answer | None:
        if path == "/oauth2/v1/certs":
            return 200, {}, self.signer.certs()
        if path == "/fake/mailbox":
            return mailbox_form(method, body, self.place)
        routes = ("/profile", "/history", "/messages", "/watch", "/stop")
        prefix = "/gmail/v1/users/me"
        if not path.startswith(prefix) or not path[len(prefix) :].startswith(routes):
            return None
        if path.endswith("/messages/send"):
            return None
        if who is None:
            return 401, {}, {"error": {"code": 401, "message": "Invalid Credentials"}}
        mailbox, scopes = who
        if not any(
            s.endswith(("gmail.readonly", "gmail.modify", "mail.google.com/")) for s in scopes
        ):
            return (
                403,
                {},
                {
                    "error": {
                        "code": 403,
                        "message": "Request had insufficient authentication scopes.",
                    }
                },
            )
        throttled = self.store.throttled()
        if throttled:
            return throttled
        box = self.store.box(mailbox)
        rest = path[len(prefix) :]
        if rest == "/profile":
            return 200, {}, {"emailAddress": mailbox, "historyId": str(box.seq)}
        if rest == "/watch" and method == "POST":
            request = json.loads(body or b"{}")
            expires = datetime.now(UTC) + timedelta(days=7)
            self.watches[mailbox.lower()] = Watch(mailbox, request.get("topicName", ""), expires)
            millis = str(int(expires.timestamp() * 1000))
            return 200, {}, {"historyId": str(box.seq), "expiration": millis}
        if rest == "/stop" and method == "POST":
            self.watches.pop(mailbox.lower(), None)
            return 204, {}, b""
        if rest == "/history":
            return self._history(box, q)
        if rest == "/messages":
            return self._list(box, q)
        if rest.startswith("/messages/"):
            found = next((m for m in box.mails if m.id == rest.split("/")[2]), None)
            if found is None:
                return (
                    404,
                    {},
                    {"error": {"code": 404, "message": "Requested entity was not found."}},
                )
            return 200, {}, self._message(found, q)
        return 404, {}, {"error": {"code": 404, "message": "Not Found"}}

    def _history(self, box: FakeMailbox, q: dict) -> Answer:
        start = int(q.get("startHistoryId", "0") or 0)
        if start < box.oldest_history or start > box.seq:
            return (
                404,
                {},
                {
                    "error": {
                        "code": 404,
                        "message": "Requested entity was not found.",
                        "status": "NOT_FOUND",
                    }
                },
            )
        after = int(q.get("pageToken", "0") or 0) or start
        size = min(int(q.get("maxResults", self.page_size)), self.page_size)
        with self.store.lock:
            records = [m for m in box.mails if m.seq > after]
        page, rest = records[:size], records[size:]
        answer: dict[str, Any] = {"historyId": str(box.seq)}
        if page:
            answer["history"] = [
                {
                    "id": str(m.seq),
                    "messagesAdded": [
                        {"message": {"id": m.id, "threadId": m.id, "labelIds": ["INBOX"]}}
                    ],
                }
                for m in page
            ]
        if rest:
            answer["nextPageToken"] = str(page[-1].seq)
        return 200, {}, answer

    def _list(self, box: FakeMailbox, q: dict) -> Answer:
        query = q.get("q", "")
        after = 0
        for word in query.split():
            if word.startswith("after:"):
                after = int(word.removeprefix("after:"))
        with self.store.lock:
            mails = [m for m in box.mails if m.received.timestamp() >= after]
        mails.sort(key=lambda m: m.seq, reverse=True)  # newest first, as Gmail lists
        skip = int(q.get("pageToken", "0") or 0)
        size = min(int(q.get("maxResults", self.page_size)), self.page_size)
        page = mails[skip : skip + size]
        answer: dict[str, Any] = {"resultSizeEstimate": len(mails)}
        if page:
            answer["messages"] = [{"id": m.id, "threadId": m.id} for m in page]
        if skip + size < len(mails):
            answer["nextPageToken"] = str(skip + size)
        return 200, {}, answer

    def _message(self, mail: StoredMail, q: dict) -> dict:
        answer: dict[str, Any] = {
            "id": mail.id,
            "threadId": mail.id,
            "labelIds": ["INBOX"],
            "historyId": str(mail.seq),
            "internalDate": str(int(mail.received.timestamp() * 1000)),
        }
        if q.get("format") == "raw":
            time.sleep(self.store.raw_delay)
            answer["raw"] = _b64url(mail.raw)
        else:
            answer["payload"] = {"headers": _headers_of(mail.raw)}
        return answer
