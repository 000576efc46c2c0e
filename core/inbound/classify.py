"""What a received message is: mail, an automatic reply, or a bounce (with the failed
recipient and the bounced message's id when the report names them)."""

from __future__ import annotations

import re
from email.message import Message
from email.parser import HeaderParser

from core.inbound.attachments import inner_message
from core.inbound.headers import ADDRESS_IN_TEXT_RE, first_msgid, header, lower_domain, unique
from core.inbound.model import BounceReport, ComplaintReport, ParsedMail

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


def classify(msg: Message, parsed: ParsedMail) -> None:
    complaint = _feedback_report(msg, parsed.defects)
    if complaint is not None:
        # Automated: never answered, beside the message it is about; the routing step puts
        # the complainer on the company's suppression list (core/deliverability/suppression.py).
        parsed.kind = "auto_reply"
        parsed.kind_detail = f"spam complaint (feedback report: {complaint.feedback_type})"
        parsed.complaint = complaint
        if complaint.original_message_id:
            parsed.thread_ids = unique([complaint.original_message_id, *parsed.thread_ids])
        return
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
                parsed.thread_ids = unique([bounce.original_message_id, *parsed.thread_ids])
            return
        # "delayed", "delivered", "relayed": automated news about a message, not a failure. It
        # goes beside the message it is about (the returned message's id threads it).
        parsed.kind = "auto_reply"
        parsed.kind_detail = f"delivery status notification ({action or 'no action'})"
        if bounce.original_message_id:
            parsed.thread_ids = unique([bounce.original_message_id, *parsed.thread_ids])
        return
    reason = _auto_reply_reason(msg, parsed)
    if reason:
        parsed.kind = "auto_reply"
        parsed.kind_detail = reason


def _auto_reply_reason(msg: Message, parsed: ParsedMail) -> str:
    auto_submitted = header(msg, "Auto-Submitted", parsed.defects).lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    if msg.get_content_type() == "multipart/report":
        report_type = str(msg.get_param("report-type") or "").lower()
        if report_type == "disposition-notification":
            return "read receipt (message disposition notification)"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Apple-Action"):
        if header(msg, name, parsed.defects):
            return f"{name} header"
    if header(msg, "Precedence", parsed.defects).lower() == "auto_reply":
        return "Precedence: auto_reply"
    # Exchange stamps this on what an inbox rule sends. An out-of-office answer comes from the
    # mailbox whose rule ran; a redirect (the company's own, to us) keeps the original sender.
    loop = header(msg, "X-MS-Exchange-Inbox-Rules-Loop", parsed.defects).lower()
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
    delayed = _DELAY_WORDING_RE.search(parsed.subject) or (
        _DELAY_WORDING_RE.search(head) and not _BOUNCE_WORDING_RE.search(parsed.subject)
    )
    if not delayed and not _BOUNCE_WORDING_RE.search(wording):
        return None
    original_id = _returned_message_id(msg, parsed.defects)
    if not original_id:
        quoted = _QUOTED_MSGID_RE.search(parsed.text)
        original_id = quoted.group(1) if quoted else ""
    if delayed:
        return "delayed", BounceReport(original_id or None, None, None, None)
    own = {parsed.from_address.lower(), *(a.lower() for a in parsed.to_addresses)}
    recipient = next(
        (m.group(0) for m in ADDRESS_IN_TEXT_RE.finditer(head) if m.group(0).lower() not in own),
        None,
    )
    status_line = _STATUS_LINE_RE.search(head)
    diagnostic = status_line.group(0) if status_line else parsed.subject
    return "failed", BounceReport(
        original_message_id=original_id or None,
        recipient=lower_domain(recipient) if recipient else None,
        status=None,
        diagnostic=" ".join(diagnostic.split())[:1000] or None,
    )


def _returned_header(msg: Message, name: str, defects: list[str]) -> str:
    """A header of the message a report returns (a message/rfc822 part, or its headers
    alone in text/rfc822-headers)."""
    try:
        for part in msg.walk():
            content_type = part.get_content_type()
            if content_type == "message/rfc822" and (inner := inner_message(part)) is not None:
                return str(inner.get(name, ""))
            elif content_type == "text/rfc822-headers":
                return str(HeaderParser().parsestr(_payload_text(part)).get(name, ""))
    except Exception as exc:
        defects.append(f"unreadable returned message: {exc}")
    return ""


def _returned_message_id(msg: Message, defects: list[str]) -> str:
    return first_msgid(_returned_header(msg, "Message-ID", defects))


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
        recipient=lower_domain(recipient) if "@" in recipient else None,
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


def _feedback_report(msg: Message, defects: list[str]) -> ComplaintReport | None:
    """An ARF report (RFC 5965: multipart/report; report-type=feedback-report): who complained
    about which of our messages."""
    try:
        if msg.get_content_type() != "multipart/report":
            return None
        if str(msg.get_param("report-type") or "").lower() != "feedback-report":
            return None
        fields: dict[str, str] = {}
        for part in msg.walk():
            if part.get_content_type() == "message/feedback-report" and not fields:
                fields = _report_fields(part)
        returned_to = _returned_header(msg, "To", defects)
    except Exception as exc:
        defects.append(f"unreadable feedback report: {exc}")
        return None
    said = fields.get("original-rcpt-to", "") or returned_to
    address = ADDRESS_IN_TEXT_RE.search(said)
    return ComplaintReport(
        original_message_id=_returned_message_id(msg, defects) or None,
        recipient=lower_domain(address.group(0)) if address else None,
        feedback_type=(fields.get("feedback-type", "") or "abuse").lower()[:40],
    )


def _report_fields(part: Message) -> dict[str, str]:
    """A machine-readable report's fields (the first value of each), however it is nested."""
    payload = part.get_payload()
    blocks = [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []
    text = "\n".join(str(b) for b in blocks) if blocks else _payload_text(part)
    fields: dict[str, str] = {}
    for key, value in HeaderParser().parsestr(text).items():
        fields.setdefault(key.lower(), " ".join(str(value).split()))
    return fields


def _payload_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    return str(part.get_payload())
