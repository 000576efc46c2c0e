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

from core.settings import Settings

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_REDACTIONS = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 [redacted]"),
    (re.compile(r"\brm_[A-Za-z0-9_-]{16,}"), "rm_[redacted]"),
    (re.compile(r"/codec/t/[^/\s]+"), "/codec/t/[redacted]"),
    # A database error's text quotes the statement's values (names, subjects, bodies).
    (re.compile(r"\[parameters: [^\n]*"), "[parameters: redacted]"),
    # Logs carry ids, never addresses: a candidate's would outlive their erasure here.
    (re.compile(r"[^\s<>()\[\],;:\"'=]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[address]"),
    (
        re.compile(
            r"(?i)\b(password|passwd|secret|token|access_token|refresh_token|code|"
            r"code_verifier|client_secret|state|key|signature)(\"?\s*[=:]\s*\"?)[^\s\"&,;}]+"
        ),
        r"\1\2[redacted]",
    ),
]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


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
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
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
            record.exc_text = redact(self.formatException(record.exc_info))
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
