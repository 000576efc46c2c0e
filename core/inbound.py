"""Parsing received mail into what routing needs. Pure functions over bytes; never raises.

Real mail is messy: broken MIME, unknown or mislabelled charsets, encoded words with bad
bytes. Every accessor here falls back to something readable and records what went wrong,
so a message is always stored and shown, never lost to a parser exception.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.parser import HeaderParser
from email.policy import default as default_policy
from email.utils import getaddresses
from html.parser import HTMLParser

from core.round_trip import CHECK_HEADER, SEND_TEST_HEADER, find_token, is_send_test

_MSGID_RE = re.compile(r"<([^<>\s]+)>")
# Subjects of automatic answers, in the languages recruiters meet most; a ticket system's
# "[host #123] AutoReply: ..." carries a bracketed prefix first.
_AUTO_SUBJECT_RE = re.compile(
    r"^\s*(\[[^\]]{0,80}\]\s*)?("
    r"automatic reply|auto[- ]?reply|autoreply|auto[- ]?response|autoresponder|auto:|"
    r"out of (the )?office|away from (the )?office|"
    r"abwesenheitsnotiz|automatische antwort|"
    r"r[ée]ponse automatique|absence du bureau|"
    r"respuesta autom[aá]tica|fuera de la oficina|"
    r"risposta automatica|"
    r"automatisch antwoord|afwezigheidsbericht|"
    r"autosvar|automatisk svar|automaattinen vastaus|"
    r"resposta autom[aá]tica|fora do escrit[oó]rio|"
    r"odpowied[zź] automatyczna|automatick[aá] odpov[eě][dď]|automatikus v[aá]lasz|"
    r"otomatik yan[\u0131i]t|автоматический ответ|αυτόματη απάντηση|"
    r"自動応答|自動返信|自动回复|自動回覆|자동 응답"
    r")(?!\w)",
    re.IGNORECASE,
)
# A ticket system's acknowledgement of a new request.
_TICKET_SUBJECT_RE = re.compile(
    r"^\s*(\[[^\]]{0,80}\]\s*)?(ticket (received|created|opened)|request received|"
    r"we('ve| have) received your (request|message|e-?mail))(?!\w)",
    re.IGNORECASE,
)
# Plain-text bounces: who sends them, and the words the common MTAs write.
_BOUNCE_SENDER_RE = re.compile(
    r"^(mailer[-_.]?daemon|mail[-_.]?daemon|mdaemon|postmaster|mail[-_.]?delivery[-_.]?system|"
    r"microsoftexchange[0-9a-f]*)@",
    re.IGNORECASE,
)
_BOUNCE_SENDER_NAME_RE = re.compile(
    r"^\W*(mail delivery (sub)?system|mail administrator|system administrator|postmaster|"
    r"mailer[-_ ]?daemon)\b",
    re.IGNORECASE,
)
_BOUNCE_WORDING_RE = re.compile(
    r"undeliver(ed|able)|returned mail|mail delivery (failed|failure|subsystem|system)|"
    r"mail failure|failed mail|mail failed|permanent delivery failure|not accepted|"
    r"failed permanently|"
    r"delivery (status notification \(failure\)|has failed|failure|failed)|"
    r"failure notice|could not be delivered|couldn'?t be delivered|wasn'?t delivered|"
    r"was not delivered|unable to deliver|permanent(ly)? (fatal )?(error|failed)|"
    r"non[- ]?deliver(y|able)|this is the qmail-send program|this is the mail system at|"
    r"message was created automatically by mail delivery software|"
    r"returning message to sender|address not found|user unknown|no such user|"
    r"recipient address rejected|mailbox unavailable|"
    # OpenSMTPD's notices.
    r"delivery status notification: (error|failed|failure)|"
    r"error has occurred while attempting to deliver",
    re.IGNORECASE,
)
_DELAY_WORDING_RE = re.compile(
    r"delivery status notification \(delay\)|delayed mail|still being retried|"
    r"warning: could not send message|delivery delayed|message delayed|will retry|"
    r"has not yet been delivered|not been delivered yet|delivery warning|has been postponed|"
    r"delivery status notification: (warning|delayed)",
    re.IGNORECASE,
)
_QUOTED_MSGID_RE = re.compile(r"^[> \t]*Message-ID:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
_STATUS_LINE_RE = re.compile(
    r"(\b[45]\d\d[ -][45]\.\d{1,3}\.\d{1,3}\b|\b[45]\.\d{1,3}\.\d{1,3}\b).*"
)
_ADDRESS_IN_TEXT_RE = re.compile(r"[\w.+'-]+@[\w-]+(\.[\w-]+)+")
# Mail clients label Windows-1252 text as ISO-8859-1 all the time; 1252 is a superset.
_CHARSET_ALIASES = {"iso-8859-1": "cp1252", "latin1": "cp1252", "us-ascii": "cp1252"}
MAX_TEXT_CHARS = 1_000_000


@dataclass
class ParsedAttachment:
    filename: str
    content_type: str
    content: bytes
    original_sender: str | None = None  # for an attached message: who wrote it

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


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
        return f"The mail server for {who} refused the message: {reason}"


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
    attachments: list[ParsedAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    # A redirect leg's single-use token (core/round_trip.py): our own check message, back.
    check_token: str | None = None
    # A send leg's test message, back through a redirect: consumed, proof of nothing.
    send_test: bool = False
    # The author of a message this one forwards (inline or attached), when there is one.
    forwarded_from: str = ""
    forwarded_from_name: str = ""


def parse(raw: bytes) -> ParsedMail:
    """Parse received bytes. Anything unreadable becomes a defect, not an exception."""
    defects: list[str] = []
    try:
        msg = message_from_bytes(raw, policy=default_policy)
    except Exception as exc:  # the stdlib parser is lenient; this is a last resort
        defects.append(f"unparseable message: {exc}")
        msg = EmailMessage()
        msg.set_payload(raw.decode("utf-8", "replace"))

    message_id = _first_msgid(_header(msg, "Message-ID", defects))
    if not message_id:
        message_id = f"<{hashlib.sha256(raw).hexdigest()}@inbound.invalid>"
    in_reply_to = _header(msg, "In-Reply-To", defects)
    references = _header(msg, "References", defects)
    thread_ids = _unique(_MSGID_RE.findall(f"{in_reply_to} {references}"))

    from_name, from_address = _first_address(msg, "From", defects)
    senders: list[str] = []
    for name in ("X-Original-From", "From", "Reply-To", "Resent-From"):
        senders.extend(addr for _, addr in _addresses(msg, name, defects))
    to_addresses = [addr for _, addr in _addresses(msg, "To", defects)]
    to_addresses += [addr for _, addr in _addresses(msg, "Cc", defects)]

    text, html, attachments = _bodies(msg, defects)
    parsed = ParsedMail(
        message_id=message_id[:998],
        in_reply_to=in_reply_to,
        references=references,
        thread_ids=[f"<{i}>" for i in thread_ids],
        from_address=from_address,
        from_name=from_name,
        sender_addresses=_unique(senders),
        to_addresses=_unique(to_addresses),
        subject=_header(msg, "Subject", defects),
        text=text,
        html=html,
        kind="mail",
        attachments=attachments,
        defects=(defects + _described(getattr(msg, "defects", [])))[:20],
        check_token=find_token(_header(msg, CHECK_HEADER, defects), message_id),
        send_test=is_send_test(_header(msg, SEND_TEST_HEADER, defects), message_id),
    )
    _classify(msg, parsed)
    if parsed.kind == "mail":
        parsed.forwarded_from_name, parsed.forwarded_from = _forwarded_sender(parsed)
    return _cleaned(parsed)


# Where a mail client starts a forwarded message in the text, in the common languages:
# Gmail's, Outlook's and Apple Mail's forward and original-message blocks.
_FORWARD_MARKER_RE = re.compile(
    r"^[ \t>*]*(-{2,}\s*(forwarded message|original message|weitergeleitete nachricht|"
    r"urspr[üu]ngliche nachricht|message transf[ée]r[ée]|message d'origine|mensaje reenviado|"
    r"mensaje original|messaggio inoltrato|messaggio originale|doorgestuurd bericht|"
    r"oorspronkelijk bericht|vidarebefordrat meddelande|ursprungligt meddelande|"
    r"videresendt (melding|meddelelse)|opprinnelig melding|oprindelig meddelelse|"
    r"mensagem encaminhada|mensagem original)\s*-{2,}|_{20,}|"
    r"begin forwarded message:|anfang der weitergeleiteten nachricht:|"
    r"d[ée]but du message r[ée]exp[ée]di[ée]\s*:|inicio del mensaje reenviado:|"
    r"inizio messaggio inoltrato:|begin doorgestuurd bericht:)",
    re.IGNORECASE | re.MULTILINE,
)
_FORWARD_FROM_RE = re.compile(
    r"^[ \t>*]*(from|von|de|da|van|fr[åa]n|fra|od|de la|lähettäjä|feladó|от)[ \t]*\*?[ \t]*:"
    r"[ \t]*\*?[ \t]*(?P<value>.+)$",
    re.IGNORECASE | re.MULTILINE,
)


def _forwarded_sender(parsed: ParsedMail) -> tuple[str, str]:
    """(name, address) of the message this one forwards: an attached message's author, else
    the From line of the first forward block in the text."""
    for attachment in parsed.attachments:
        if attachment.original_sender:
            return "", attachment.original_sender
    marker = _FORWARD_MARKER_RE.search(parsed.text[:200_000])
    if marker is None:
        return "", ""
    block = parsed.text[marker.end() : marker.end() + 2000]
    line = _FORWARD_FROM_RE.search(block)
    if line is None:
        return "", ""
    value = line.group("value").strip().replace("[mailto:", "<").replace("]", ">")
    address = _ADDRESS_IN_TEXT_RE.search(value)
    if address is None:
        return "", ""
    name = value[: value.find(address.group(0))].strip(" \t<\"'*")
    return name[:200], _lower_domain(address.group(0))


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


def _cleaned(parsed: ParsedMail) -> ParsedMail:
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
    parsed.html = clean_text(parsed.html) if parsed.html is not None else None
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


# -- headers -------------------------------------------------------------------------------


def _header(msg: Message, name: str, defects: list[str]) -> str:
    try:
        value = msg.get(name)
        return " ".join(str(value).split()) if value is not None else ""
    except Exception as exc:  # a header the policy cannot parse: fall back to its raw text
        defects.append(f"unreadable {name} header: {exc}")
        for key, raw_value in msg.raw_items():
            if key.lower() == name.lower():
                return " ".join(str(raw_value).split())
        return ""


def _addresses(msg: Message, name: str, defects: list[str]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    try:
        values = msg.get_all(name) or []
        for value in values:
            for address in getattr(value, "addresses", ()):
                if address.addr_spec and "@" in address.addr_spec:
                    found.append((address.display_name, address.addr_spec))
    except Exception as exc:
        defects.append(f"unreadable {name} header: {exc}")
    if not found:
        raw = [v for k, v in msg.raw_items() if k.lower() == name.lower()]
        found = [(n, a) for n, a in getaddresses([str(v) for v in raw]) if "@" in a]
    return [(n, _lower_domain(a)) for n, a in found]


def _first_address(msg: Message, name: str, defects: list[str]) -> tuple[str, str]:
    addresses = _addresses(msg, name, defects)
    return addresses[0] if addresses else ("", "")


def _lower_domain(address: str) -> str:
    local, _, domain = address.strip().strip("<>").rpartition("@")
    return f"{local}@{domain.lower()}"


def _first_msgid(value: str) -> str:
    match = _MSGID_RE.search(value)
    return f"<{match.group(1)}>" if match else ""


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.lower() not in seen:
            seen.add(item.lower())
            unique.append(item)
    return unique


# -- bodies and attachments ---------------------------------------------------------------


def _bodies(
    msg: Message, defects: list[str], depth: int = 0
) -> tuple[str, str | None, list[ParsedAttachment]]:
    text: str | None = None
    html: str | None = None
    attachments: list[ParsedAttachment] = []
    try:
        parts = list(msg.walk())
    except Exception as exc:
        defects.append(f"unreadable MIME structure: {exc}")
        parts = [msg]
    for part in parts:
        try:
            content_type = part.get_content_type()
            if content_type.startswith("multipart/") and not part.is_multipart():
                # The boundary matches none of its parts: the body is one text part.
                if text is None:
                    text = _decode_text(part, defects)
                continue
            if content_type == "message/rfc822" and part is not msg:
                if (inner := _inner_message(part)) is not None:
                    # Forwarded as an attachment, or returned in a bounce. Its own parts (a CV)
                    # come next in walk() and are listed too.
                    attachments.append(_attached_message(inner, _filename(part), defects))
                continue
            if part.is_multipart() or content_type.startswith("message/"):
                continue  # containers; their leaves come next in walk()
            filename = _filename(part)
            disposition = part.get_content_disposition()
            if disposition != "attachment" and not filename:
                if content_type == "text/plain" and text is None:
                    text = _decode_text(part, defects)
                    continue
                if content_type == "text/html" and html is None:
                    html = _decode_text(part, defects)
                    continue
                if content_type.startswith("text/"):
                    continue  # alternative bodies beyond the first, delivery-status text
            payload = _payload_bytes(part)
            if filename.lower().endswith(".eml") and depth < _MAX_NESTING:
                # A saved message attached as a file: list it as a message, and its files.
                inner = message_from_bytes(payload, policy=default_policy)
                attachments.append(_attached_message(inner, filename, defects, payload))
                attachments.extend(_bodies(inner, defects, depth + 1)[2])
                continue
            attachments.append(
                ParsedAttachment(
                    filename=filename or f"attachment-{len(attachments) + 1}",
                    content_type=content_type[:255],
                    content=payload,
                )
            )
        except Exception as exc:
            defects.append(f"unreadable MIME part: {exc}")
    if text is None:
        text = _html_to_text(html) if html else ""
    return text[:MAX_TEXT_CHARS], html[:MAX_TEXT_CHARS] if html else None, attachments


_MAX_NESTING = 3


def _attached_message(
    inner: Message, filename: str, defects: list[str], raw: bytes | None = None
) -> ParsedAttachment:
    """An attached message, named by its subject, with its original sender; it downloads as
    a .eml file."""
    subject = _header(inner, "Subject", defects)
    _, sender = _first_address(inner, "From", defects)
    if raw is None:
        try:
            raw = inner.as_bytes()
        except Exception:
            raw = inner.as_string().encode("utf-8", "replace")
    name = "".join(c for c in subject if ord(c) >= 32 and c not in '\\/:*?"<>|\x7f').strip()
    return ParsedAttachment(
        filename=f"{name[:200]}.eml" if name else (filename or "forwarded message.eml"),
        content_type="message/rfc822",
        content=raw,
        original_sender=sender or None,
    )


def _filename(part: Message) -> str:
    try:
        name = part.get_filename() or ""
    except Exception:
        name = ""
    # Keep a name a browser can save: no paths, no control characters.
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in name if ord(c) >= 32 and c != "\x7f")[:255]


_DEFECTS = {
    "StartBoundaryNotFoundDefect": (
        "the MIME boundary matches none of the message's parts, so its whole body is shown as text"
    ),
    "CloseBoundaryNotFoundDefect": "the last MIME part is not closed",
    "MultipartInvariantViolationDefect": "a multipart message without parts",
    "MissingHeaderBodySeparatorDefect": "a header line without a colon",
    "InvalidBase64PaddingDefect": "base64 content with wrong padding",
    "InvalidBase64CharactersDefect": "base64 content with invalid characters",
    "NoBoundaryInMultipartDefect": "a multipart message without a boundary",
}


def _described(found: list[Exception]) -> list[str]:
    """Each defect the parser noted, in words; the same one once."""
    out: list[str] = []
    for defect in found:
        name = type(defect).__name__
        words = _DEFECTS.get(name) or str(defect).strip() or name.removesuffix("Defect")
        if words not in out:
            out.append(words)
    return out


def _payload_bytes(part: Message) -> bytes:
    """A leaf part's decoded bytes (empty for a multipart or an undecodable part)."""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _decode_text(part: Message, defects: list[str]) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = str(part.get_payload()).encode("utf-8", "replace")
    charset = (part.get_content_charset() or "utf-8").lower()
    charset = _CHARSET_ALIASES.get(charset, charset)
    try:
        return payload.decode(charset)
    except LookupError:
        defects.append(f"unknown charset {charset!r}; shown as UTF-8")
    except UnicodeDecodeError:
        defects.append(f"text is not valid {charset}; shown with replacements")
        return payload.decode(charset, "replace")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("cp1252", "replace")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "tr", "li"):
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.chunks.append(data)


def _html_to_text(html: str) -> str:
    extractor = _TextExtractor()
    try:
        extractor.feed(html)
        extractor.close()
    except Exception:
        return html
    lines = [" ".join(line.split()) for line in "".join(extractor.chunks).splitlines()]
    return "\n".join(line for line in lines if line).strip()


# -- classification -----------------------------------------------------------------------


def _classify(msg: Message, parsed: ParsedMail) -> None:
    report = _delivery_report(msg, parsed.defects)
    if report is None or not report[0]:
        report = _plain_text_bounce(msg, parsed)  # no report, or one that states no outcome
    if report is not None:
        action, bounce = report
        if action == "failed":
            parsed.kind = "bounce"
            parsed.bounce = bounce
            parsed.kind_detail = bounce.describe()
            if bounce.original_message_id:
                parsed.thread_ids = _unique([bounce.original_message_id, *parsed.thread_ids])
            return
        # "delayed", "delivered", "relayed": automated news about a message, not a failure.
        parsed.kind = "auto_reply"
        parsed.kind_detail = f"delivery status notification ({action or 'no action'})"
        return
    reason = _auto_reply_reason(msg, parsed)
    if reason:
        parsed.kind = "auto_reply"
        parsed.kind_detail = reason


def _auto_reply_reason(msg: Message, parsed: ParsedMail) -> str:
    auto_submitted = _header(msg, "Auto-Submitted", parsed.defects).lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    if msg.get_content_type() == "multipart/report":
        report_type = str(msg.get_param("report-type") or "").lower()
        if report_type == "disposition-notification":
            return "read receipt (message disposition notification)"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Apple-Action"):
        if _header(msg, name, parsed.defects):
            return f"{name} header"
    if _header(msg, "Precedence", parsed.defects).lower() == "auto_reply":
        return "Precedence: auto_reply"
    # Exchange stamps this on what an inbox rule sends. An out-of-office answer comes from the
    # mailbox whose rule ran; a redirect (the company's own, to us) keeps the original sender.
    loop = _header(msg, "X-MS-Exchange-Inbox-Rules-Loop", parsed.defects).lower()
    if loop and parsed.from_address and loop == parsed.from_address.lower():
        return "X-MS-Exchange-Inbox-Rules-Loop: sent by the mailbox's own rule"
    if _AUTO_SUBJECT_RE.match(parsed.subject):
        return "automatic-reply subject"
    if _TICKET_SUBJECT_RE.match(parsed.subject):
        return "ticket system acknowledgement"
    return ""


def _plain_text_bounce(msg: Message, parsed: ParsedMail) -> tuple[str, BounceReport] | None:
    """A bounce without a delivery report: a mail system's sender, and the words MTAs write.
    The bounced message is found from a returned message part, else a quoted Message-ID."""
    if parsed.from_address and not (
        _BOUNCE_SENDER_RE.match(parsed.from_address)
        or _BOUNCE_SENDER_NAME_RE.match(parsed.from_name)
    ):
        return None  # a person's mail (a mail system writes as one, or from the null sender)
    head = parsed.text[:20_000]
    wording = f"{parsed.subject}\n{head}"
    if _DELAY_WORDING_RE.search(parsed.subject) or (
        _DELAY_WORDING_RE.search(head) and not _BOUNCE_WORDING_RE.search(parsed.subject)
    ):
        return "delayed", BounceReport(None, None, None, None)
    if not _BOUNCE_WORDING_RE.search(wording):
        return None
    original_id = _returned_message_id(msg, parsed.defects)
    if not original_id:
        quoted = _QUOTED_MSGID_RE.search(parsed.text)
        original_id = quoted.group(1) if quoted else ""
    own = {parsed.from_address.lower(), *(a.lower() for a in parsed.to_addresses)}
    recipient = next(
        (m.group(0) for m in _ADDRESS_IN_TEXT_RE.finditer(head) if m.group(0).lower() not in own),
        None,
    )
    status_line = _STATUS_LINE_RE.search(head)
    diagnostic = status_line.group(0) if status_line else parsed.subject
    return "failed", BounceReport(
        original_message_id=original_id or None,
        recipient=_lower_domain(recipient) if recipient else None,
        status=None,
        diagnostic=" ".join(diagnostic.split())[:1000] or None,
    )


def _inner_message(part: Message) -> Message | None:
    """The message a message/rfc822 part carries."""
    inner = part.get_payload()
    inner = inner[0] if isinstance(inner, list) and inner else inner
    return inner if isinstance(inner, Message) else None


def _returned_message_id(msg: Message, defects: list[str]) -> str:
    try:
        for part in msg.walk():
            content_type = part.get_content_type()
            if content_type == "message/rfc822" and (inner := _inner_message(part)) is not None:
                return _first_msgid(str(inner.get("Message-ID", "")))
            elif content_type == "text/rfc822-headers":
                headers = HeaderParser().parsestr(_payload_text(part))
                return _first_msgid(str(headers.get("Message-ID", "")))
    except Exception as exc:
        defects.append(f"unreadable returned message: {exc}")
    return ""


def _delivery_report(msg: Message, defects: list[str]) -> tuple[str, BounceReport] | None:
    try:
        if msg.get_content_type() != "multipart/report":
            return None
        if str(msg.get_param("report-type") or "").lower() != "delivery-status":
            return None
        fields: dict[str, str] = {}
        for part in msg.walk():
            if part.get_content_type() == "message/delivery-status":
                fields = fields or _first_failed_recipient(part)
    except Exception as exc:
        defects.append(f"unreadable delivery report: {exc}")
        return None
    recipient = fields.get("final-recipient") or fields.get("original-recipient") or ""
    recipient = recipient.partition(";")[2].strip() if ";" in recipient else recipient.strip()
    diagnostic = fields.get("diagnostic-code", "")
    diagnostic = diagnostic.partition(";")[2].strip() if ";" in diagnostic else diagnostic
    status = fields.get("status") or None
    # Some MTAs write "failure", or "failed (bad destination mailbox address)", or no action
    # at all beside a permanent (5.x.x) status.
    action = (fields.get("action", "").lower().split() or [""])[0]
    action = _ACTIONS.get(action, action) or ("failed" if (status or "").startswith("5") else "")
    return action, BounceReport(
        original_message_id=_returned_message_id(msg, defects) or None,
        recipient=_lower_domain(recipient) if "@" in recipient else None,
        status=status,
        diagnostic=" ".join(diagnostic.split())[:1000] or None,
    )


_ACTIONS = {"failure": "failed", "fail": "failed"}


def _first_failed_recipient(part: Message) -> dict[str, str]:
    """The per-recipient block whose Action is failed, else the first one."""
    blocks: list[dict[str, str]] = []
    payload = part.get_payload()
    if isinstance(payload, list):
        for block in payload:
            if isinstance(block, Message):
                items = block.raw_items()
                blocks.append({k.lower(): " ".join(str(v).split()) for k, v in items})
    else:  # some servers send the report as one text block
        text = _payload_text(part)
        for chunk in re.split(r"\r?\n\r?\n", text):
            headers = HeaderParser().parsestr(chunk)
            blocks.append({k.lower(): " ".join(str(v).split()) for k, v in headers.items()})
    recipients = [b for b in blocks if "action" in b]
    for block in recipients:
        if block["action"].lower().startswith(("failed", "failure")):
            return block
    return recipients[0] if recipients else {}


def _payload_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    return str(part.get_payload())
