"""The round-trip test of a connection: a message from the custom address to itself, through
the connection (the send leg), that the company's redirect brings back to the hosted address
(the redirect leg). Pure functions: composing the message, recognising it when it comes back,
and what to tell an admin whose redirect is missing.

The message carries a single-use token, in a header and in its Message-ID. Real redirects add
Received lines, rewrite the envelope sender (SRS) and may rewrite headers, so the token alone
identifies it: by the header, or by the Message-ID when a forwarder dropped the header.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from core.mail import Composed, compose

CHECK_HEADER = "X-Recruitmail-Check"
_MESSAGE_ID = re.compile(r"<check\.([A-Za-z0-9_-]{20,64})@", re.IGNORECASE)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def compose_check(
    *, address: str, name: str, hosted: str, token: str, domain: str, now: datetime
) -> Composed:
    """The test message: from the custom address to itself, saying in plain words what it is."""
    text = (
        f"This is a test message from Recruitmail, sent from {address} to itself while an "
        "administrator connects this address to Recruitmail.\n\n"
        f"Your mail system should redirect mail for {address} to {hosted}, so that candidates' "
        "replies reach Recruitmail. When this message arrives there, the connection test knows "
        "the redirect works.\n\n"
        "You can delete this message. Nobody needs to reply to it.\n"
    )
    _, composed = compose(
        from_address=address,
        from_name=name,
        to_address=address,
        to_name=name,
        subject="Recruitmail connection test (you can delete this message)",
        text=text,
        html=None,
        message_id=f"<check.{token}@{domain}>",
        date=now,
        extra_headers={CHECK_HEADER: token, "Auto-Submitted": "auto-generated"},
    )
    return composed


def find_token(check_header: str, message_id: str) -> str | None:
    """The token a received message carries, if it is a connection test's message."""
    value = check_header.strip()
    if _TOKEN.match(value):
        return value
    match = _MESSAGE_ID.search(message_id)
    return match.group(1) if match else None


def waiting_detail(address: str, hosted: str, minutes: int) -> str:
    return (
        f"The test message went out from {address}. Waiting up to {minutes} minutes for it to "
        f"come back through the redirect to {hosted}."
    )


def verified_detail(address: str, hosted: str, at: datetime) -> str:
    return (
        f"The test message came back from {address} to {hosted} at "
        f"{at:%Y-%m-%d %H:%M} UTC: candidates' replies will reach Recruitmail."
    )


def redirect_instructions(address: str, hosted: str, minutes: int) -> str:
    """Why the redirect leg failed, and how to set the redirect up on the common systems."""
    return (
        f"The test message sent from {address} did not come back to {hosted} within {minutes} "
        f"minutes, so candidates' replies to {address} will not reach Recruitmail. Redirect "
        f"(not forward as an attachment) mail for {address} to {hosted}, then test again:\n"
        f"- Google Workspace: Admin console → Apps → Google Workspace → Gmail → Routing → "
        f"Recipient address map (or the mailbox's Settings → Forwarding), add {hosted}.\n"
        f"- Microsoft 365: Exchange admin center → Recipients → Mailboxes → {address} → Mail "
        f"flow settings → Email forwarding: forward to {hosted}, keeping a copy if you like "
        f"(outbound forwarding must be allowed by the outbound spam policy).\n"
        f"- Elsewhere: an alias or a redirect rule in your mail system that sends mail for "
        f"{address} on to {hosted}."
    )


def unverified_warning(address: str, hosted: str) -> str:
    return (
        f"The redirect from {address} to {hosted} is not verified yet: candidates' replies "
        "will not reach Recruitmail until it works. Test the connection again once the "
        "redirect is set up."
    )
