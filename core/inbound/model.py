"""What parsing a received message yields: the parsed mail, its attachments, a bounce report;
and the cleaning every stored text goes through."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Segment:
    """A run of a received text's lines of one kind (core/inbound/segments.py): new, quoted,
    signature or forwarded."""

    kind: str
    text: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "text": self.text}


@dataclass
class ParsedAttachment:
    filename: str
    content_type: str
    content: bytes
    original_sender: str | None = None  # for an attached message: who wrote it
    content_id: str | None = None  # an inline image's Content-ID, without the brackets

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


_GAVE_UP_WORDS = (
    "delivery time expired",
    "message expired",
    "queue lifetime",
    "retry timeout exceeded",
    "delivery temporarily suspended",
    "gave up",
)


@dataclass
class BounceReport:
    """One failed recipient of a delivery status notification (RFC 3464)."""

    original_message_id: str | None
    recipient: str | None
    status: str | None
    diagnostic: str | None

    def describe(self) -> str:
        reason = self.diagnostic or (f"status {self.status}" if self.status else "no reason given")
        who = self.recipient or "the recipient"
        if self.gave_up:
            return (
                f"Delivery to {who} was given up after retrying: the receiving side kept asking "
                f"to try later, or could not be reached ({reason})"
            )
        return f"The mail server for {who} refused the message: {reason}"

    @property
    def gave_up(self) -> bool:
        """The sending server stopped retrying (its queue lifetime ran out): it was never
        refused. A failed report then keeps the last temporary status (4.x.x), or says 5.4.7."""
        status = (self.status or "").strip()
        said = (self.diagnostic or "").lower()
        return status.startswith(("4.", "5.4.7")) or any(words in said for words in _GAVE_UP_WORDS)


@dataclass(frozen=True)
class ComplaintReport:
    """A spam complaint (an ARF feedback report, RFC 5965) about a message we sent."""

    original_message_id: str | None
    recipient: str | None  # who complained: Original-Rcpt-To, else the returned message's To
    feedback_type: str  # abuse, fraud, …


@dataclass
class ParsedMail:
    message_id: str  # with angle brackets; synthesised from the bytes when missing
    in_reply_to: str
    references: str
    thread_ids: list[str]  # every Message-ID in In-Reply-To and References, in order
    from_address: str
    from_name: str
    # Addresses that may be the original sender, most trustworthy first.
    sender_addresses: list[str]
    to_addresses: list[str]
    subject: str
    text: str
    html: str | None
    kind: str  # mail, auto_reply or bounce (see MessageKind)
    kind_detail: str = ""
    bounce: BounceReport | None = None
    complaint: ComplaintReport | None = None
    # A send leg's test message: its DKIM signatures, verified when it was prepared for routing.
    dkim_signatures: list[dict[str, Any]] = field(default_factory=list)
    # ... and its connection's deliverability report made with them (core/deliverability).
    deliverability: Any = None
    attachments: list[ParsedAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    # A redirect leg's single-use token (core/connections/round_trip.py): our own check
    # message, back.
    check_token: str | None = None
    # A send leg's test message, back through a redirect: consumed, proof of nothing.
    send_test: bool = False
    # The author of a message this one forwards (inline or attached), when there is one.
    forwarded_from: str = ""
    forwarded_from_name: str = ""
    # What the sender wrote in this message, apart from the history quoted under it
    # (core/inbound/reply.py), and the HTML without that history (core/inbound/fold.py).
    reply_text: str = ""
    quoted_text: str | None = None
    signature: str | None = None
    segments: tuple[Segment, ...] = ()
    reply_html: str | None = None
    # Why the HTML is not shown (over the parsing budget, core/inbound/html.py), else None.
    html_note: str | None = None
    # Gmail's forwarding confirmation code and who asked (core/inbound/forwarding.py).
    forwarding_code: str | None = None
    forwarding_requester: str = ""


def clean_text(value: str) -> str:
    """Text any database stores: undecodable bytes become U+FFFD, NUL characters go."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # surrogates: 8-bit bytes the parser could not decode
        try:
            value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", "")


def cleaned(parsed: ParsedMail) -> ParsedMail:
    for name in (
        "message_id",
        "in_reply_to",
        "references",
        "from_address",
        "from_name",
        "subject",
        "text",
        "kind_detail",
        "forwarded_from",
        "forwarded_from_name",
    ):
        setattr(parsed, name, clean_text(getattr(parsed, name)))
    for name in ("html", "quoted_text", "signature", "reply_html"):
        value = getattr(parsed, name)
        setattr(parsed, name, clean_text(value) if value is not None else None)
    parsed.reply_text = clean_text(parsed.reply_text)
    parsed.segments = tuple(Segment(s.kind, clean_text(s.text)) for s in parsed.segments)
    parsed.thread_ids = [clean_text(i) for i in parsed.thread_ids]
    parsed.sender_addresses = [clean_text(a) for a in parsed.sender_addresses]
    parsed.to_addresses = [clean_text(a) for a in parsed.to_addresses]
    parsed.defects = [clean_text(d) for d in parsed.defects]
    for attachment in parsed.attachments:
        attachment.filename = clean_text(attachment.filename)
    if parsed.bounce is not None:
        for name in ("original_message_id", "recipient", "status", "diagnostic"):
            value = getattr(parsed.bounce, name)
            setattr(parsed.bounce, name, clean_text(value) if value is not None else None)
    return parsed
