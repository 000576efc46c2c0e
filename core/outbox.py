"""Reading the dev outbox: the files its SMTP sink (worker/outbox.py) writes, one per message,
in one folder per company."""

from __future__ import annotations

import json
import re
import uuid
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

# The first line the dev outbox transport adds: the id of the company the mail is sent for.
OUTBOX_COMPANY_HEADER = "X-Recruitmail-Outbox-Company"
_TAG = re.compile(rb"^X-Recruitmail-Outbox-Company: ([^\r\n]*)\r?\n", re.IGNORECASE)


def split_company_tag(raw: bytes) -> tuple[str | None, bytes]:
    """(the company id the transport tagged the message with, the message without the tag)."""
    match = _TAG.match(raw)
    if match is None:
        return None, raw
    value = match.group(1).decode("ascii", "replace").strip()
    try:
        company_id = str(uuid.UUID(value))
    except ValueError:
        company_id = None
    return company_id, raw[match.end() :]


def company_folder(directory: Path, company_id: str | None) -> Path:
    """Each company's mail in its own folder; untagged mail in one that no company reads."""
    return directory / (company_id or "_untagged")


def read_outbox(directory: Path, company_id: uuid.UUID, limit: int = 100) -> list[dict[str, Any]]:
    """The newest messages captured for one company, parsed for display. A message the parser
    cannot decode is shown as best it can be."""
    folder = company_folder(directory, str(company_id))
    if not folder.exists():
        return []
    items: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json"), reverse=True):
        if len(items) >= limit:
            break
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written
        msg = message_from_bytes(record["raw"].encode(), policy=default_policy)
        items.append(
            {
                "id": path.stem,
                "received_at": record["received_at"],
                "mail_from": record["mail_from"],
                "rcpt_tos": record["rcpt_tos"],
                "from": _header(msg, "From"),
                "to": _header(msg, "To"),
                "subject": _header(msg, "Subject"),
                "message_id": _header(msg, "Message-ID").strip(),
                "text": _body(msg, "plain") or "",
                "html": _body(msg, "html"),
            }
        )
    return items


def _header(msg: Message, name: str) -> str:
    try:
        return str(msg[name] or "")
    except Exception:  # an undecodable encoded word
        return str(msg.get(name, failobj="") or "")


def _body(msg: Message, subtype: str) -> str | None:
    if not isinstance(msg, EmailMessage):
        return None
    part = msg.get_body((subtype,))
    if not isinstance(part, EmailMessage):
        return None
    try:
        return str(part.get_content())
    except (LookupError, UnicodeError, ValueError):  # an unknown or lying charset
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
