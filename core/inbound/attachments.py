"""The bodies and attachments of a message: the first text and HTML parts, every attachment,
attached messages listed with their own files, whatever the MIME structure's defects."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from email.utils import parseaddr
from typing import Any

from core.inbound.headers import POLICY, first_address, header
from core.inbound.html import html_to_text
from core.inbound.model import ParsedAttachment

# Serialising what was received: headers as they came, never parsed and refolded.
_AS_RECEIVED = POLICY.clone(refold_source="none", linesep="\r\n")

# Mail clients label Windows-1252 text as ISO-8859-1 all the time; 1252 is a superset.
_CHARSET_ALIASES = {"iso-8859-1": "cp1252", "latin1": "cp1252", "us-ascii": "cp1252"}
MAX_TEXT_CHARS = 1_000_000
log = logging.getLogger(__name__)
# extract-msg logs every property it cannot read; what matters becomes a defect here.
logging.getLogger("extract_msg").setLevel(logging.ERROR)


# Beyond these a message's structure is not read further (docs/hardening.md): Postfix refuses
# MIME nested deeper than 100 levels; no real message lists a thousand files.
MAX_MIME_DEPTH = 50
MAX_PARTS = 1000


def _parts(msg: Message, defects: list[str]) -> Iterator[tuple[Message, int]]:
    """Every part of `msg`, itself first, in document order, with how many attached messages
    (message/rfc822) it is inside. Iterative, so a deep structure costs no recursion; a part
    whose children cannot be read is still given, without them."""
    stack: list[tuple[Message, int, int]] = [(msg, 0, 0)]
    seen = 0
    while stack:
        part, depth, messages = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            defects.append(f"only the first {MAX_PARTS} MIME parts are read")
            return
        yield part, messages
        try:
            children = part.get_payload() if part.is_multipart() else []
        except Exception as exc:
            defects.append(f"unreadable MIME structure: {exc}")
            continue
        if not isinstance(children, list) or not children:
            continue
        if depth >= MAX_MIME_DEPTH:
            defects.append(f"MIME parts nested deeper than {MAX_MIME_DEPTH} levels are not read")
            continue
        try:
            inside = messages + (part.get_content_type() == "message/rfc822" and part is not msg)
        except Exception as exc:
            defects.append(f"unreadable MIME part: {exc}")
            inside = messages
        stack.extend(
            (child, depth + 1, inside) for child in reversed(children) if isinstance(child, Message)
        )


def bodies(
    msg: Message, defects: list[str], depth: int = 0
) -> tuple[str, str | None, list[ParsedAttachment]]:
    text: str | None = None
    html: str | None = None
    attachments: list[ParsedAttachment] = []
    for part, messages in _parts(msg, defects):
        listed = len(attachments)
        try:
            content_type = part.get_content_type()
            if content_type.startswith("multipart/") and not part.is_multipart():
                # The boundary matches none of its parts: the body is one text part.
                if text is None:
                    text = _decode_text(part, defects)
                continue
            if content_type == "message/rfc822" and part is not msg:
                # Forwarded as an attachment, or returned in a bounce. Its own parts (a CV)
                # come next and are listed too; messages attached deeper than _MAX_NESTING stay
                # inside the one that holds them.
                if messages < _MAX_NESTING:
                    attachments.append(attached_message_part(part, defects))
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
            if _is_outlook(filename, content_type):
                # An Outlook message saved as a file: named by its subject, and its files.
                attachments.extend(outlook_message(payload, filename, defects))
                continue
            if filename.lower().endswith(".eml") and depth < _MAX_NESTING:
                # A saved message attached as a file: list it as a message, and its files.
                inner = message_from_bytes(payload, policy=POLICY)
                attachments.append(_attached_message(inner, filename, defects, payload))
                attachments.extend(bodies(inner, defects, depth + 1)[2])
                continue
            attachments.append(
                ParsedAttachment(
                    filename=filename or f"attachment-{len(attachments) + 1}",
                    content_type=content_type[:255],
                    content=payload,
                    content_id=_content_id(part),
                )
            )
        except Exception as exc:
            # Whatever failed, the part is still listed with the bytes that came (never the
            # text body twice), and the others stay listed.
            defects.append(f"unreadable MIME part: {exc}")
            kept = _kept_anyway(part, listed, text, html) if len(attachments) == listed else None
            if kept is not None:
                attachments.append(kept)
    if text is None:
        text = html_to_text(html) if html else ""
    return text[:MAX_TEXT_CHARS], html[:MAX_TEXT_CHARS] if html else None, attachments


_MAX_NESTING = 3


def _kept_anyway(
    part: Message, count: int, text: str | None, html: str | None
) -> ParsedAttachment | None:
    """A part whose reading failed, as an attachment: its best name, its bytes as they came
    (decoded when its encoding can be, else raw). None for an empty part or a text body."""
    try:
        content_type = part.get_content_type()
    except Exception:
        content_type = "application/octet-stream"
    try:
        if content_type.startswith("multipart/"):
            return None
        try:
            payload = part.get_payload(decode=True)
        except Exception:
            payload = None
        if not isinstance(payload, bytes):
            payload = _raw_bytes(part)
        if not payload:
            return None
        try:
            name = _filename(part)
        except Exception:
            name = ""
        if not name and content_type in ("text/plain", "text/html"):
            body = text if content_type == "text/plain" else html
            if body is None or payload.decode("utf-8", "replace") in body:
                return None  # the message's own text, shown as its body
        if not name:
            rfc822 = content_type == "message/rfc822"
            name = "forwarded message.eml" if rfc822 else f"attachment-{count + 1}"
        return ParsedAttachment(filename=name, content_type=content_type[:255], content=payload)
    except Exception:
        return None


def _raw_bytes(part: Message) -> bytes:
    """A part's body as it came: its text, or the messages it carries written out."""
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    if isinstance(raw, list):
        written = []
        for inner in raw:
            try:
                written.append(inner.as_bytes() if isinstance(inner, Message) else b"")
            except Exception:
                written.append(str(inner).encode("utf-8", "replace"))
        return b"".join(written)
    return b""


def attached_message_part(part: Message, defects: list[str]) -> ParsedAttachment:
    """A message/rfc822 part as an attachment. Its header block may be broken in any way real
    clients break it; then it is still listed, by the best name to be had, with the bytes that
    came, and the defect is recorded."""
    inner = None
    try:
        inner = inner_message(part)
        if inner is not None:
            return _attached_message(inner, _filename(part), defects)
    except Exception as exc:
        defects.append(f"an attached message could not be read: {exc}")
    return ParsedAttachment(
        filename=_filename(part) or "forwarded message.eml",
        content_type="message/rfc822",
        content=message_bytes(inner) if inner is not None else _payload_text_bytes(part),
    )


def message_bytes(message: Message) -> bytes:
    """A parsed message's bytes as they came (headers never parsed and refolded), or as much
    of them as can be had."""
    try:
        return message.as_bytes(policy=_AS_RECEIVED)
    except Exception as exc:
        failure = exc
    try:
        return message.as_string(policy=_AS_RECEIVED).encode("utf-8", "surrogateescape")
    except Exception:
        log.debug("an attached message was kept as text only", exc_info=failure)
    head = "".join(f"{name}: {value}\r\n" for name, value in message.raw_items())
    return (head + "\r\n").encode("utf-8", "surrogateescape") + _payload_text_bytes(message)


def _payload_text_bytes(part: Message) -> bytes:
    payload = part.get_payload()
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    return b""


def _attached_message(
    inner: Message, filename: str, defects: list[str], raw: bytes | None = None
) -> ParsedAttachment:
    """An attached message, named by its subject, with its original sender; it downloads as
    a .eml file."""
    subject = header(inner, "Subject", defects)
    _, sender = first_address(inner, "From", defects)
    if raw is None:
        raw = message_bytes(inner)
    name = _safe_name(subject)
    return ParsedAttachment(
        filename=f"{name[:200]}.eml" if name else (filename or "forwarded message.eml"),
        content_type="message/rfc822",
        content=raw,
        original_sender=sender or None,
    )


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# olefile reads shorter bytes as a file name: never hand it those.
_OLE_MINIMUM = 1536


def _is_outlook(filename: str, content_type: str) -> bool:
    return filename.lower().endswith(".msg") or content_type == "application/vnd.ms-outlook"


def outlook_message(payload: bytes, filename: str, defects: list[str]) -> list[ParsedAttachment]:
    """An Outlook .msg file (extract-msg): itself, named by its subject with its sender
    recorded, then the files inside it. One that cannot be opened is still listed, as sent."""
    listed = ParsedAttachment(
        filename=filename or "outlook message.msg",
        content_type="application/vnd.ms-outlook",
        content=payload,
    )
    if not payload.startswith(_OLE_MAGIC) or len(payload) < _OLE_MINIMUM:
        defects.append(f"the attachment {listed.filename!r} is not an Outlook message inside")
        return [listed]
    try:
        import extract_msg  # 0.2 s to import: only a mail with an Outlook .msg pays it

        msg = extract_msg.openMsg(payload, delayAttachments=False)
    except Exception as exc:
        defects.append(f"the Outlook message {listed.filename!r} could not be opened: {exc}")
        return [listed]
    inside: list[ParsedAttachment] = []
    try:
        subject = _safe_name(str(getattr(msg, "subject", "") or ""))
        if subject:
            listed.filename = f"{subject[:200]}.msg"
        _, sender = parseaddr(str(getattr(msg, "sender", "") or ""))
        listed.original_sender = sender[:320] or None
        for item in getattr(msg, "attachments", []):
            try:
                inside.append(_outlook_attachment(item, len(inside)))
            except Exception as exc:
                defects.append(f"a file inside {listed.filename!r} could not be read: {exc}")
    except Exception as exc:
        defects.append(f"the Outlook message {listed.filename!r} could not be read: {exc}")
    finally:
        with contextlib.suppress(Exception):
            msg.close()
    return [listed, *inside]


def _outlook_attachment(item: Any, position: int) -> ParsedAttachment:
    data = item.data
    name = _safe_name(str(item.getFilename() or "")) or f"attachment-{position + 1}"
    if isinstance(data, bytes):
        content_type = str(getattr(item, "mimetype", "") or "application/octet-stream")
        return ParsedAttachment(filename=name[:255], content_type=content_type[:255], content=data)
    # A message inside the message: listed as a .msg of its own.
    subject = _safe_name(str(getattr(data, "subject", "") or "")) or name
    _, sender = parseaddr(str(getattr(data, "sender", "") or ""))
    return ParsedAttachment(
        filename=f"{subject[:200]}.msg",
        content_type="application/vnd.ms-outlook",
        content=data.exportBytes(),
        original_sender=sender[:320] or None,
    )


def _safe_name(name: str) -> str:
    return "".join(c for c in name if ord(c) >= 32 and c not in '\\/:*?"<>|\x7f').strip()


def _content_id(part: Message) -> str | None:
    """An inline image's Content-ID, as `cid:` URLs name it (no brackets)."""
    try:
        value = str(part.get("Content-ID") or "")
    except Exception:
        return None
    value = "".join(value.split()).strip("<>")
    return value[:255] or None


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


def described(found: list[Exception]) -> list[str]:
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


def inner_message(part: Message) -> Message | None:
    """The message a message/rfc822 part carries."""
    inner = part.get_payload()
    inner = inner[0] if isinstance(inner, list) and inner else inner
    return inner if isinstance(inner, Message) else None
