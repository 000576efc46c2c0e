"""Placeholders in bulk messages: {{candidate.name}}, {{candidate.first_name}},
{{company.name}}, {{sender.name}}. Values are inserted safely: no line breaks into a subject
(no header injection), HTML-escaped into HTML."""

from __future__ import annotations

import html
import re

PLACEHOLDERS = ("candidate.name", "candidate.first_name", "company.name", "sender.name")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def unknown_placeholders(template: str) -> list[str]:
    return [name for name in _PLACEHOLDER.findall(template) if name not in PLACEHOLDERS]


def check_template(field: str, template: str) -> None:
    """Raise ValueError naming the field and each unknown placeholder."""
    unknown = unknown_placeholders(template)
    if unknown:
        names = ", ".join("{{" + n + "}}" for n in dict.fromkeys(unknown))
        allowed = ", ".join("{{" + n + "}}" for n in PLACEHOLDERS)
        raise ValueError(f"{field}: unknown placeholder {names}; use {allowed}")


def values_for(candidate_name: str, company_name: str, sender_name: str) -> dict[str, str]:
    first = candidate_name.strip().split()[0] if candidate_name.strip() else candidate_name
    return {
        "candidate.name": candidate_name,
        "candidate.first_name": first,
        "company.name": company_name,
        "sender.name": sender_name,
    }


def render(template: str, values: dict[str, str], *, mode: str = "text") -> str:
    """mode: "header" (line breaks become spaces), "text", or "html" (escaped)."""

    def value(match: re.Match[str]) -> str:
        text = values[match.group(1)]
        if mode == "header":
            return " ".join(text.split())
        if mode == "html":
            return html.escape(text)
        return text

    return _PLACEHOLDER.sub(value, template)
