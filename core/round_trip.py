"""The round-trip test of a connection, in two legs:

- the send leg: a test message from the custom address to itself, through the connection. It
  proves that sending works, and nothing else: it travels through a server the company chose,
  so it carries no token, and coming back proves nothing;
- the redirect leg: a check message that the platform sends to the custom address by its own
  transport, to the address's mail exchanger, as any outside sender would. Only the address's
  real mail routing, with the company's redirect in it, brings it back to the hosted address.
  Its single-use token, in a header and in its Message-ID, proves that the company controls the
  address (core/ownership.py).

Pure functions: composing both messages, recognising them when they come back, and what to
tell an admin whose redirect is missing. Real redirects add Received lines, rewrite the
envelope sender (SRS) and may drop headers, so the check token is also read from the
Message-ID.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import datetime

from core.mail import Composed, compose

CHECK_HEADER = "X-Recruitmail-Check"
SEND_TEST_HEADER = "X-Recruitmail-Test"
_MESSAGE_ID = re.compile(r"<check\.([A-Za-z0-9_-]{20,64})@", re.IGNORECASE)
_SEND_TEST_ID = re.compile(r"<send-test\.[0-9a-f]{32}@", re.IGNORECASE)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def compose_send_test(
    *, address: str, name: str, hosted: str, domain: str, now: datetime
) -> Composed:
    """The send leg's message: from the custom address to itself, through the connection."""
    text = (
        f"This is a test message from Recruitmail, sent from {address} to itself through the "
        "connection an administrator is setting up. It shows that Recruitmail can send as "
        f"{address}.\n\n"
        f"A separate message from Recruitmail checks that mail for {address} reaches {hosted}.\n"
        "\nYou can delete this message. Nobody needs to reply to it.\n"
    )
    _, composed = compose(
        from_address=address,
        from_name=name,
        to_address=address,
        to_name=name,
        subject="Recruitmail sending test (you can delete this message)",
        text=text,
        html=None,
        message_id=f"<send-test.{uuid.uuid4().hex}@{domain}>",
        date=now,
        extra_headers={SEND_TEST_HEADER: "send", "Auto-Submitted": "auto-generated"},
    )
    return composed


def compose_check(
    *, address: str, company: str, hosted: str, sender: str, token: str, domain: str, now: datetime
) -> Composed:
    """The redirect leg's message: from the platform to the custom address, with the token."""
    text = (
        f"Recruitmail sent this message to {address} because an administrator of {company} is "
        "connecting this address to Recruitmail.\n\n"
        f"Your mail system should redirect mail for {address} to {hosted}, so that candidates' "
        "replies reach Recruitmail. When this message arrives there, the connection test knows "
        "the redirect works, and that the address is yours.\n\n"
        "If you did not expect this, you can ignore it: without the redirect, nothing changes.\n"
    )
    _, composed = compose(
        from_address=sender,
        from_name="Recruitmail",
        to_address=address,
        to_name="",
        subject="Recruitmail address check (you can delete this message)",
        text=text,
        html=None,
        message_id=f"<check.{token}@{domain}>",
        date=now,
        extra_headers={CHECK_HEADER: token, "Auto-Submitted": "auto-generated"},
    )
    return composed


def find_token(check_header: str, message_id: str) -> str | None:
    """The token a received message carries, if it is a redirect leg's check message."""
    value = check_header.strip()
    if _TOKEN.match(value):
        return value
    match = _MESSAGE_ID.search(message_id)
    return match.group(1) if match else None


def is_send_test(test_header: str, message_id: str) -> bool:
    """A send leg's message, back through a redirect: consumed, and proof of nothing."""
    return test_header.strip().lower() == "send" or bool(_SEND_TEST_ID.search(message_id))


def waiting_detail(address: str, hosted: str, minutes: int, via: str = "") -> str:
    where = f" ({via})" if via else ""
    return (
        f"Recruitmail sent a check message to {address}{where}. Waiting up to {minutes} minutes "
        f"for the address's mail system to redirect it to {hosted}."
    )


def verified_detail(address: str, hosted: str, at: datetime) -> str:
    return (
        f"The check message sent to {address} came back to {hosted} at {at:%Y-%m-%d %H:%M} UTC "
        "through the address's own mail routing: candidates' replies will reach Recruitmail, "
        "and the address is proven to be this company's."
    )


def domain_record_detail(address: str, at: datetime) -> str:
    return (
        f"The domain of {address} sends its mail straight to Recruitmail, and its DNS record "
        f"proves it is this company's (checked {at:%Y-%m-%d %H:%M} UTC): candidates' replies "
        "reach Recruitmail."
    )


def held_detail(address: str) -> str:
    return (
        f"The check message came back, but {address} was proven first by another Recruitmail "
        "account, which owns it until it disconnects the address."
    )


def redirect_instructions(address: str, hosted: str, minutes: int) -> str:
    """Why the redirect leg failed, and how to set the redirect up on the common systems."""
    return (
        f"The check message sent to {address} did not come back to {hosted} within {minutes} "
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
