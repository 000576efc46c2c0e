"""Reading the dev outbox: the files its SMTP sink (worker/outbox.py) writes, one per message."""

from __future__ import annotations

import json
from collections.abc import Collection
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import default as default_policy
from pathlib import Path
from typing import Any


def read_outbox(
    directory: Path, senders: Collection[str], limit: int = 100
) -> list[dict[str, Any]]:
    """The newest captured messages sent from one of `senders` (a company sees only its own
    mail), parsed for display. A message the parser cannot decode is shown as best it can be."""
    if not directory.exists():
        return []
    wanted = {s.lower() for s in senders}
    items: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.json"), reverse=True):
        if len(items) >= limit:
            break
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written, or not ours
        if str(record.get("mail_from", "")).lower() not in wanted:
            continue
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
