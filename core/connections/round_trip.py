"""The round-trip test of a connection, in two legs:

- the send leg: a test message from the custom address to itself, through the connection. It
  proves that sending works, and nothing else: it travels through a server the company chose,
  so it carries no token, and coming back proves nothing;
- the redirect leg: a check message that the platform sends to the custom address by its own
  transport, to the address's mail exchanger, as any outside sender would. Only the address's
  real mail routing, with the company's redirect in it, brings it back to the hosted address.
  Its single-use token, in a header and in its Message-ID, proves that the company controls the
  address (core/connections/ownership.py).

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


# Where a check message's delivery reports go: an address on the hosted domain naming the check
# (by a part of its token's hash, never the token), so a refused redirect is heard of at all.
BOUNCE_LOCAL = "check-bounces"
_BOUNCE_RE = re.compile(rf"^{BOUNCE_LOCAL}\+([0-9a-f]{{24}})@", re.IGNORECASE)


def bounce_address(domain: str, check_hash: str) -> str:
    return f"{BOUNCE_LOCAL}+{check_hash[:24]}@{domain}"


def bounce_key(recipient: str) -> str | None:
    """The check-hash prefix a delivery report's recipient names, if it is a check's."""
    match = _BOUNCE_RE.match(recipient.strip())
    return match.group(1).lower() if match else None


def mail_system(exchanger: str) -> str:
    """Whose mail system an MX host is: microsoft, google, or other."""
    host = exchanger.lower().rstrip(".")
    if host.endswith((".protection.outlook.com", ".outlook.com", ".office365.us")):
        return "microsoft"
    if host.endswith((".google.com", ".googlemail.com")) or host.startswith("smtp.google"):
        return "google"
    return "other"


def _microsoft_forwarding(address: str, hosted: str) -> str:
    return (
        f"Allow automatic forwarding for {address} alone (an administrator, in two places):\n"
        "1. Microsoft Defender portal (security.microsoft.com) → Email & collaboration → "
        "Policies & rules → Threat policies → Anti-spam → Create policy → Outbound. Name it "
        f'"Recruiting forwarding", apply it to the user {address}, and set "Automatic forwarding '
        'rules" to "On - Forwarding is enabled". (The default policy\'s "Automatic - '
        'System-controlled" means Off; a policy scoped to one mailbox leaves every other '
        "mailbox as it is.)\n"
        "2. Exchange admin center (admin.exchange.microsoft.com) → Mail flow → Remote domains: "
        f'add {hosted.partition("@")[2]} with "Allow automatic forwarding" on (or check that '
        "the Default remote domain allows it).\n"
        f"Then forward {address} to {hosted} (Exchange admin center → Recipients → Mailboxes → "
        f"{address} → Mail flow settings → Email forwarding) and test again."
    )


def _google_forwarding(address: str, hosted: str) -> str:
    return (
        "Allow automatic forwarding in Google Workspace: Admin console (admin.google.com) → "
        "Apps → Google Workspace → Gmail → End User Access → Automatic forwarding → allow users "
        f"to automatically forward incoming email. Or route it for the organisation instead "
        f"(no confirmation code): Gmail → Routing → Recipient address map, map {address} to "
        f"{hosted}. Then test again."
    )


_ALTERNATIVES = (
    "Or let replies in without any forwarding: turn on mailbox_sync (Recruitmail reads the "
    "mailbox you connected) or hosted_reply_to (your mail asks for replies at a Recruitmail "
    "address) with PUT /v1/connections/{id}/inbound."
)


def bounce_explanation(address: str, hosted: str, status: str, diagnostic: str) -> str:
    """Why the redirect refused the check message, from its delivery report, and the fix."""
    said = " ".join(f"{status} {diagnostic}".split()).strip()
    lowered = said.lower()
    if "5.7.520" in said or "does not allow external forwarding" in lowered:
        return (
            f"{address} did not redirect the check message: Microsoft 365 refused to forward it "
            f"outside the organisation ({said}). Its outbound anti-spam policy blocks automatic "
            "forwarding, and Microsoft then returns every candidate's reply to the candidate "
            f"as undeliverable.\n{_microsoft_forwarding(address, hosted)}\n{_ALTERNATIVES}"
        )
    if ("forward" in lowered and ("google" in lowered or "gmail" in lowered)) or (
        "5.7.1" in said and "forward" in lowered
    ):
        return (
            f"{address} did not redirect the check message: the mail system refused to forward "
            f"it ({said}).\n{_google_forwarding(address, hosted)}\n{_ALTERNATIVES}"
        )
    if "5.4.6" in said or "loop" in lowered or "hop count" in lowered:
        return (
            f"The redirect of {address} loops ({said}): mail for it is sent round between "
            f"addresses and never reaches {hosted}. Redirect {address} to {hosted} directly, "
            f"with no rule that sends {hosted}'s mail back. {_ALTERNATIVES}"
        )
    said = said or "no reason given"
    return (
        f"The check message sent to {address} was refused on its way to {hosted} ({said}): the "
        f"redirect does not work. Check the forwarding or redirect rule of {address}, then test "
        f"again. {_ALTERNATIVES}"
    )


def redirect_instructions(address: str, hosted: str, minutes: int, exchanger: str = "") -> str:
    """Why the redirect leg failed (the check message neither came back nor bounced), the
    likely cause for the mail system the address's MX names, and how to set the redirect up."""
    head = (
        f"The check message sent to {address} did not come back to {hosted} within {minutes} "
        f"minutes, so candidates' replies to {address} will not reach Recruitmail."
    )
    system = mail_system(exchanger) if exchanger else "other"
    if system == "microsoft":
        return (
            f"{head} {address} is on Microsoft 365 ({exchanger}), whose default outbound spam "
            "policy blocks automatic forwarding to outside addresses: most likely the redirect "
            f"is missing or blocked.\n{_microsoft_forwarding(address, hosted)}\n{_ALTERNATIVES}"
        )
    if system == "google":
        return (
            f"{head} {address} is on Google Workspace ({exchanger}): most likely no redirect is "
            "set, or a forwarding address waits for its confirmation code (Recruitmail shows "
            "it on the connection when Gmail sends it). Redirect (not forward as an attachment) "
            f"mail for {address} to {hosted}.\n{_google_forwarding(address, hosted)}\n"
            f"{_ALTERNATIVES}"
        )
    return (
        f"{head} Redirect (not forward as an attachment) mail for {address} to {hosted}, then "
        "test again:\n"
        f"- Google Workspace: Admin console → Apps → Google Workspace → Gmail → Routing → "
        f"Recipient address map (or the mailbox's Settings → Forwarding), add {hosted}.\n"
        f"- Microsoft 365: Exchange admin center → Recipients → Mailboxes → {address} → Mail "
        f"flow settings → Email forwarding: forward to {hosted}, keeping a copy if you like "
        f"(outbound forwarding must be allowed by the outbound spam policy).\n"
        f"- Elsewhere: an alias or a redirect rule in your mail system that sends mail for "
        f"{address} on to {hosted}.\n{_ALTERNATIVES}"
    )


def unverified_warning(address: str, hosted: str) -> str:
    return (
        f"The redirect from {address} to {hosted} is not verified yet: candidates' replies "
        "will not reach Recruitmail until it works. Test the connection again once the "
        "redirect is set up."
    )
