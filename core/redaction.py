"""Masking what must not be kept: addresses in reasons and failures, secrets in log lines.

Every pattern here runs on text an outsider controls (a request path, a server's refusal, a
header), so it runs on RE2 (google-re2), whose matching time is linear in the text whatever the
pattern: Python's backtracking engine took quadratic time on an address pattern over a
15,800-letter path, and 32 such requests held the API's event loop for 22 s (docs/hardening.md).
RE2 has no look-arounds or back-references; none of these patterns needs them.
"""

from __future__ import annotations

import re2

# Something shaped like an address: the local part, "@", a domain with a dot.
ADDRESS = re2.compile(r"[^\s<>()\[\],;:\"'=]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")

# Each log line is masked by these, in order (core/logs.py).
_SECRETS = [
    (re2.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 [redacted]"),
    (re2.compile(r"\brm_[A-Za-z0-9_-]{16,}"), "rm_[redacted]"),
    (re2.compile(r"/codec/t/[^/\s]+"), "/codec/t/[redacted]"),
    # A database error's text quotes the statement's values (names, subjects, bodies).
    (re2.compile(r"\[parameters: [^\n]*"), "[parameters: redacted]"),
    # Logs carry ids, never addresses: a candidate's would outlive their erasure here.
    (ADDRESS, "[address]"),
    (
        re2.compile(
            r"(?i)\b(password|passwd|secret|token|access_token|refresh_token|code|"
            r"code_verifier|client_secret|state|key|signature)(\"?\s*[=:]\s*\"?)[^\s\"&,;}]+"
        ),
        r"\1\2[redacted]",
    ),
]


def mask_addresses(text: str) -> str:
    return str(ADDRESS.sub("[address]", text))


def redact(text: str) -> str:
    """`text` with every secret-shaped and address-shaped part masked (linear time)."""
    for pattern, replacement in _SECRETS:
        text = str(pattern.sub(replacement, text))
    return text
