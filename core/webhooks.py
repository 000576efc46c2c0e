"""Webhooks to the Standard Webhooks specification (standardwebhooks.com): secrets, signatures,
the retry schedule and the rules an endpoint URL must follow. Pure functions.

A delivery carries `webhook-id` (the event's id, the same on every retry), `webhook-timestamp`
(seconds) and `webhook-signature`: `v1,` + base64 of HMAC-SHA256 over `id.timestamp.body`, keyed
with the base64-decoded secret after `whsec_`. While a rotated secret overlaps, both sign, space
separated, so a receiver holding either verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"
# A rotated-out secret keeps signing this long, so receivers can switch without a gap.
ROTATION_OVERLAP = timedelta(hours=24)
# Waits before each retry of a failed delivery: over a day in all, as Standard Webhooks and
# the services it describes retry (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).
RETRY_SCHEDULE = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
# Kept of an endpoint's answer, for the deliveries list.
RESPONSE_BODY_LIMIT = 1024


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(message_id: str, timestamp: int, body: bytes, signing: list[str]) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": "Recruitmail-Webhooks/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body) for s in signing),
    }


Stored = dict[str, Any]


def signing_secrets(stored: Stored, now: datetime) -> list[str]:
    """The secrets that sign now: the current one, and each rotated-out one during its
    overlap (a second rotation within the day keeps the first one's overlap)."""
    return [stored["current"], *(r["secret"] for r in _retired(stored, now))]


def rotated(stored: Stored, now: datetime) -> Stored:
    retired = [*_retired(stored, now), {"secret": stored["current"], "until": _at(now)}]
    return {"current": new_secret(), "retired": retired}


def _retired(stored: Stored, now: datetime) -> list[dict[str, str]]:
    """Rotated-out secrets still in their overlap (older stores kept one, as `previous`)."""
    found = list(stored.get("retired") or [])
    if stored.get("previous") and stored.get("previous_until"):
        found.append({"secret": stored["previous"], "until": stored["previous_until"]})
    return [r for r in found if datetime.fromisoformat(r["until"]) > now]


def _at(now: datetime) -> str:
    return (now + ROTATION_OVERLAP).isoformat()


def overlap_until(stored: Stored) -> str | None:
    """When the newest rotated-out secret stops signing."""
    retired = stored.get("retired") or []
    return retired[-1]["until"] if retired else stored.get("previous_until")


def answer_to_keep(body: str, *, personal: bool) -> str:
    """What is kept of an endpoint's answer for the deliveries list. An endpoint that receives
    personal data may echo it; then only a digest and the length are kept, so nothing of a
    candidate outlives their erasure in an answer."""
    if not personal or not body:
        return body
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    return f"[not kept: this endpoint receives personal data; {len(body)} bytes, sha256 {digest}…]"


class FairShare:
    """How many delivery rounds each company may have under way in one worker: at most
    `per_company`, and the last `reserve` of the worker's `total` rounds only for a company
    with none under way. One company's slow or dead endpoints then never take every slot, so
    another company's delivery starts at once."""

    def __init__(self, total: int, per_company: int, reserve: int) -> None:
        self.total, self.per_company, self.reserve = total, per_company, reserve
        self.busy: dict[str, int] = {}

    def take(self, company: str) -> bool:
        running = self.busy.get(company, 0)
        in_use = sum(self.busy.values())
        if running >= self.per_company or in_use >= self.total:
            return False
        if running and in_use >= self.total - self.reserve:
            return False
        self.busy[company] = running + 1
        return True

    def give_back(self, company: str) -> None:
        left = self.busy.get(company, 1) - 1
        if left > 0:
            self.busy[company] = left
        else:
            self.busy.pop(company, None)


def next_attempt(attempts: int, schedule: tuple[timedelta, ...]) -> timedelta | None:
    """The wait before the next attempt after `attempts` failed ones; None when they ran out."""
    return schedule[attempts - 1] if 1 <= attempts <= len(schedule) else None


def url_problem(url: str, *, development: bool) -> str | None:
    """Why `url` cannot be an endpoint, or None. Where it resolves is checked when it connects
    (core/netguard.py)."""
    if len(url) > 2000:
        return "url: at most 2,000 characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "url: not a valid URL"
    allowed = ("https", "http") if development else ("https",)
    if parts.scheme not in allowed:
        return "url: must start with https://" + (
            " (http:// is allowed in development only)" if not development else ""
        )
    if not parts.hostname:
        return "url: has no host"
    if parts.username or parts.password:
        return "url: must not carry a user name or password (they would be logged and shown)"
    if port == 0:
        return "url: port 0 is not a port"
    return None
