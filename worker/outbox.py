"""The dev outbox: an SMTP sink that keeps every message it receives as a file, in one folder
per company (read by core/outbox.py for `GET /dev/outbox`).

The dev outbox transport (providers/relay.py) puts the company's id in a first header line;
the sink files the message under it and stores the message without that line.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from aiosmtpd.controller import Controller

from core.outbox import company_folder, split_company_tag


class OutboxHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server, session, envelope) -> str:
        company_id, raw = split_company_tag(envelope.original_content)
        record = {
            "received_at": time.time(),
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "raw": raw.decode("utf-8", "replace"),
        }
        folder = company_folder(self.directory, company_id)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
        tmp = folder / (name + ".tmp")
        tmp.write_text(json.dumps(record))
        tmp.rename(folder / name)  # readers never see a half-written file
        return "250 Message accepted for delivery"


def start_outbox(directory: Path, host: str, port: int) -> Controller:
    controller = Controller(OutboxHandler(directory), hostname=host, port=port)
    controller.start()
    return controller
