"""Header fields as real mail has them: unparseable values fall back to their raw text, and
addresses are normalised (the domain lower-cased)."""

from __future__ import annotations

import re
from email.message import Message
from email.utils import getaddresses

MSGID_RE = re.compile(r"<([^<>\s]+)>")
ADDRESS_IN_TEXT_RE = re.compile(r"[\w.+'-]+@[\w-]+(\.[\w-]+)+")


def header(msg: Message, name: str, defects: list[str]) -> str:
    try:
        value = msg.get(name)
        return " ".join(str(value).split()) if value is not None else ""
    except Exception as exc:  # a header the policy cannot parse: fall back to its raw text
        defects.append(f"unreadable {name} header: {exc}")
        for key, raw_value in msg.raw_items():
            if key.lower() == name.lower():
                return " ".join(str(raw_value).split())
        return ""


def addresses(msg: Message, name: str, defects: list[str]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    try:
        values = msg.get_all(name) or []
        for value in values:
            for address in getattr(value, "addresses", ()):
                if address.addr_spec and "@" in address.addr_spec:
                    found.append((address.display_name, address.addr_spec))
    except Exception as exc:
        defects.append(f"unreadable {name} header: {exc}")
    if not found:
        raw = [v for k, v in msg.raw_items() if k.lower() == name.lower()]
        found = [(n, a) for n, a in getaddresses([str(v) for v in raw]) if "@" in a]
    return [(n, lower_domain(a)) for n, a in found]


def first_address(msg: Message, name: str, defects: list[str]) -> tuple[str, str]:
    found = addresses(msg, name, defects)
    return found[0] if found else ("", "")


def lower_domain(address: str) -> str:
    local, _, domain = address.strip().strip("<>").rpartition("@")
    return f"{local}@{domain.lower()}"


def first_msgid(value: str) -> str:
    match = MSGID_RE.search(value)
    return f"<{match.group(1)}>" if match else ""


def unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.lower() not in seen:
            seen.add(item.lower())
            unique.append(item)
    return unique
