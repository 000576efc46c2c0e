"""Parsing received mail into what routing needs. Pure functions over bytes; never raises.

Real mail is messy: broken MIME, unknown or mislabelled charsets, encoded words with bad
bytes. Every accessor here falls back to something readable and records what went wrong,
so a message is always stored and shown, never lost to a parser exception.
"""

from __future__ import annotations

import hashlib
from email import message_from_bytes
from email.message import EmailMessage

from core.connections.round_trip import CHECK_HEADER, SEND_TEST_HEADER, find_token, is_send_test
from core.inbound.attachments import MAX_PARTS, bodies, described
from core.inbound.classify import classify
from core.inbound.fold import fold_html
from core.inbound.forwarding import gmail_confirmation
from core.inbound.forwards import forwarded_sender
from core.inbound.headers import (
    MSGID_RE,
    POLICY,
    addresses,
    first_address,
    first_msgid,
    header,
    unique,
)
from core.inbound.html import normalize, refusal_note, screen
from core.inbound.model import ParsedMail, cleaned
from core.inbound.segments import split_reply

# The email package spends about 0.2 ms on each MIME part, and 25 MB hold 200,000 tiny ones: the
# parse reads the message up to its boundary line number MAX_BOUNDARY_LINES (what it lists stops
# at MAX_PARTS anyway). The message is stored whole either way.
MAX_BOUNDARY_LINES = 2 * MAX_PARTS


def _within_budget(raw: bytes, defects: list[str]) -> bytes:
    position = -1
    for _ in range(MAX_BOUNDARY_LINES + 1):
        position = raw.find(b"\n--", position + 1)
        if position < 0:
            return raw
    defects.append(
        f"only the part of the message up to its {MAX_BOUNDARY_LINES}th MIME boundary is read; "
        "the message is kept whole as received"
    )
    return raw[:position]


def parse(raw: bytes) -> ParsedMail:
    """Parse received bytes. Anything unreadable becomes a defect, not an exception."""
    defects: list[str] = []
    try:
        msg = message_from_bytes(_within_budget(raw, defects), policy=POLICY)
    except Exception as exc:  # the stdlib parser is lenient; this is a last resort
        defects.append(f"unparseable message: {exc}")
        msg = EmailMessage()
        msg.set_payload(raw.decode("utf-8", "replace"))

    message_id = first_msgid(header(msg, "Message-ID", defects))
    if not message_id:
        message_id = f"<{hashlib.sha256(raw).hexdigest()}@inbound.invalid>"
    in_reply_to = header(msg, "In-Reply-To", defects)
    references = header(msg, "References", defects)
    thread_ids = unique(MSGID_RE.findall(f"{in_reply_to} {references}"))

    from_name, from_address = first_address(msg, "From", defects)
    senders: list[str] = []
    for name in ("X-Original-From", "From", "Reply-To", "Resent-From"):
        senders.extend(addr for _, addr in addresses(msg, name, defects))
    to_addresses = [addr for _, addr in addresses(msg, "To", defects)]
    to_addresses += [addr for _, addr in addresses(msg, "Cc", defects)]

    text, html, attachments = bodies(msg, defects)
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # the wire's line ends, not ours
    parsed = ParsedMail(
        message_id=message_id[:998],
        in_reply_to=in_reply_to,
        references=references,
        thread_ids=[f"<{i}>" for i in thread_ids],
        from_address=from_address,
        from_name=from_name,
        sender_addresses=unique(senders),
        to_addresses=unique(to_addresses),
        subject=header(msg, "Subject", defects),
        text=text,
        html=html,
        kind="mail",
        attachments=attachments,
        defects=(defects + described(getattr(msg, "defects", [])))[:20],
        check_token=find_token(header(msg, CHECK_HEADER, defects), message_id),
        send_test=is_send_test(header(msg, SEND_TEST_HEADER, defects), message_id),
    )
    classify(msg, parsed)
    confirmation = gmail_confirmation(parsed.from_address, parsed.subject, parsed.text)
    if confirmation is not None:
        parsed.forwarding_code = confirmation.code
        parsed.forwarding_requester = confirmation.requester
    if parsed.kind == "mail":
        parsed.forwarded_from_name, parsed.forwarded_from = forwarded_sender(parsed)
    split = split_reply(parsed.text)
    parsed.reply_text, parsed.quoted_text, parsed.signature, parsed.segments = (
        split.reply_text, split.quoted_text, split.signature, split.segments,
    )  # fmt: skip
    refusal = screen(parsed.html) if parsed.html else None
    if refusal is not None:
        parsed.html_note = refusal_note(refusal)
        parsed.defects.append(refusal)
    elif parsed.html:
        try:
            parsed.reply_html = fold_html(normalize(parsed.html), split)
        except Exception as exc:  # HTML no parser foresaw: shown whole
            parsed.defects.append(f"the quoted history could not be folded out of the HTML: {exc}")
    return cleaned(parsed)
