"""Header fields as real mail has them: unparseable values fall back to their raw text, and
addresses are normalised (the domain lower-cased)."""

from __future__ import annotations

import re
from email.message import Message
from email.policy import EmailPolicy
from email.utils import getaddresses
from typing import Any

# A header value is parsed up to this many characters. The email package's header parser takes
# quadratic time in a value's length (a 2 MB References header took 8 s), and parses again on
# every read; what routing reads (the first 200 Message-IDs, a few hundred addresses) fits.
# MIME headers (Content-Type and the like), read for every part, are shorter still.
# The address parser is worse than quadratic on some shapes (4 KB of quotes: 0.3 s): address
# headers are parsed up to 4 KB, about a hundred recipients.
MAX_HEADER_CHARS = 16 * 1024
MAX_MIME_HEADER_CHARS = 2 * 1024
MAX_ADDRESS_HEADER_CHARS = 4 * 1024
_ADDRESS_HEADERS = frozenset(
    "from to cc bcc reply-to sender resent-from resent-to resent-cc resent-sender "
    "x-original-from".split()
)


def header_limit(name: str) -> int:
    name = name.lower()
    if name.startswith("content-"):
        return MAX_MIME_HEADER_CHARS
    return MAX_ADDRESS_HEADER_CHARS if name in _ADDRESS_HEADERS else MAX_HEADER_CHARS


class _BoundedPolicy(EmailPolicy):
    """`email.policy.default`, parsing each header's value up to its limit."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        return super().header_fetch_parse(name, value[: header_limit(name)])


# What every parser of received mail here reads messages with.
POLICY = _BoundedPolicy()

MSGID_RE = re.compile(r"<([^<>\s]+)>")
# Bounded parts (an address's local part is at most 64 characters, a label 63), so a search over
# a long run of letters with no "@" in it takes linear time, not quadratic.
ADDRESS_IN_TEXT_RE = re.compile(r"[\w.+'-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,10}")


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
