"""The dev outbox: an SMTP sink that keeps every message it receives as a file (read by
core/outbox.py for `GET /dev/outbox`)."""

from __future__ import annotations

import json
import time
import uuid
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


def start_outbox(directory: Path, host: str, port: int) -> Controller:
    controller = Controller(OutboxHandler(directory), hostname=host, port=port)
    controller.start()
    return controller
