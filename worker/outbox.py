"""The dev outbox: an SMTP sink that keeps every message it receives as a file."""

from __future__ import annotations

import json
import time
import uuid
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

from aiosmtpd.controller import Controller


class OutboxHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server, session, envelope) -> str:
        record = {
            "received_at": time.time(),
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "raw": envelope.original_content.decode("utf-8", "replace"),
        }
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
        tmp = self.directory / (name + ".tmp")
        tmp.write_text(json.dumps(record))
        tmp.rename(self.directory / name)  # readers never see a half-written file
        return "250 Message accepted for delivery"


def read_outbox(directory: Path, limit: int = 100) -> list[dict]:
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
                "text": body.get_content() if body is not None else "",
                "html": html.get_content() if html is not None else None,
            }
        )
    return items


def start_outbox(directory: Path, host: str, port: int) -> Controller:
    controller = Controller(OutboxHandler(directory), hostname=host, port=port)
    controller.start()
    return controller
