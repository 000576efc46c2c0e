"""Logging for every process: JSON lines in production, with the request id and workflow id,
and a last line of defence that redacts anything shaped like a secret.

The code does not log secrets, tokens or bodies in the first place; the redaction catches what
libraries might (uvicorn's access log prints callback URLs, which carry authorization codes).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

from core.redaction import redact
from core.settings import Settings

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


# A longer line is cut (after redaction) and says how much was left out: a 15,800-letter request
# path, or a message quoting a megabyte, makes one bounded line.
MAX_LINE = 8192


def bounded(text: str) -> str:
    if len(text) <= MAX_LINE:
        return text
    return f"{text[:MAX_LINE]}… [{len(text) - MAX_LINE} more characters]"


def new_request_id(given: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a new one."""
    if given and _REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


class ContextFilter(logging.Filter):
    """Adds request_id and workflow_id (inside an activity or workflow) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        workflow_id = None
        details = getattr(record, "temporal_activity", None) or getattr(
            record, "temporal_workflow", None
        )
        if isinstance(details, dict):
            workflow_id = details.get("workflow_id")
        record.workflow_id = workflow_id
        return True


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = bounded(redact(message))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = bounded(redact(record.exc_text))
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, ()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "workflow_id"):
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = bounded(redact(self.formatException(record.exc_info)))
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = [
            f"{key}={getattr(record, key)}"
            for key in ("request_id", "workflow_id")
            if getattr(record, key, None)
        ]
        return f"{line} [{' '.join(tags)}]" if tags else line


def log_handler(json_lines: bool, stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    return handler


def configure_logging(settings: Settings, level: int = logging.INFO) -> None:
    """Called once by each process's entry point (never at import)."""
    json_lines = (settings.log_format or ("text" if settings.is_development else "json")) == "json"
    root = logging.getLogger()
    root.handlers = [log_handler(json_lines)]
    root.setLevel(level)
    # uvicorn's loggers go through ours (uvicorn is started with log_config=None).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command
