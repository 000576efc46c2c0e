"""Reading the dev outbox: the files its SMTP sink (worker/outbox.py) writes, one per message."""

from __future__ import annotations

import json
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any


def read_outbox(directory: Path, limit: int = 100) -> list[dict[str, Any]]:
    """The newest captured messages first, parsed for display."""
    if not directory.exists():
        return []
    files = sorted(directory.glob("*.json"), reverse=True)[:limit]
    items = []
    for path in files:
        record = json.loads(path.read_text())
        msg = message_from_bytes(record["raw"].encode(), policy=default_policy)
        body = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        items.append(
            {
                "id": path.stem,
                "received_at": record["received_at"],
                "mail_from": record["mail_from"],
                "rcpt_tos": record["rcpt_tos"],
                "from": str(msg["From"] or ""),
                "to": str(msg["To"] or ""),
                "subject": str(msg["Subject"] or ""),
                "message_id": str(msg["Message-ID"] or "").strip(),
                "text": body.get_content() if isinstance(body, EmailMessage) else "",
                "html": html.get_content() if isinstance(html, EmailMessage) else None,
            }
        )
    return items
