"""Received mail, parsed: `parse(raw)` never raises and always yields something to store and
show. By concern: parse (the whole), headers, attachments (bodies and files), classify (mail,
automatic reply or bounce), forwards, reply (the reply apart from the quoted history), html
(its text, its safe form and its folded form)."""

from core.inbound.model import BounceReport, ParsedAttachment, ParsedMail, clean_text
from core.inbound.parse import parse

__all__ = ["BounceReport", "ParsedAttachment", "ParsedMail", "clean_text", "parse"]
