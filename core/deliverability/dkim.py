"""DKIM (RFC 6376): which domains signed a message, and whether each signature verifies.
dkimpy verifies; its key lookups go through our resolver."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dkim as dkimpy
from dkim.util import parse_tag_value

from core.resolver import DnsUnavailable, Resolver

# Signatures verified per message at most: a message may carry any number.
MAX_SIGNATURES = 5


@dataclass(frozen=True)
class Signature:
    domain: str  # d=
    selector: str  # s=
    ok: bool
    detail: str = ""


def _dnsfunc(resolver: Resolver):  # type: ignore[no-untyped-def]
    def txt(name: bytes | str, timeout: float = 5) -> bytes | None:
        host = name.decode() if isinstance(name, bytes) else name
        try:
            found = resolver.txt(host.rstrip("."))  # no such name: no key
        except DnsUnavailable as exc:
            raise dkimpy.DnsTimeoutError(str(exc)) from exc
        return found[0].encode() if found else None

    return txt


def signatures(raw: bytes, resolver: Resolver) -> list[Signature]:
    """Every DKIM signature of `raw` (up to MAX_SIGNATURES), verified."""
    try:
        checker = dkimpy.DKIM(raw)
    except Exception:
        return []
    headers = [v for k, v in checker.headers if k.lower() == b"dkim-signature"]
    found = []
    for index, value in enumerate(headers[:MAX_SIGNATURES]):
        try:
            tags = parse_tag_value(b"".join(value.split()))
        except Exception:
            found.append(Signature("", "", False, "an unreadable DKIM-Signature"))
            continue
        domain = tags.get(b"d", b"").decode("utf-8", "replace").lower()
        selector = tags.get(b"s", b"").decode("utf-8", "replace")
        try:
            ok = bool(checker.verify(idx=index, dnsfunc=_dnsfunc(resolver)))
            detail = "" if ok else "the signature does not verify"
        except dkimpy.DnsTimeoutError as exc:
            ok, detail = False, f"its key could not be looked up ({exc})"
        except Exception as exc:  # dkimpy raises for missing keys, bad syntax, ...
            ok, detail = False, str(exc)[:200] or type(exc).__name__
        found.append(Signature(domain, selector, ok, detail))
    return found


# Headers signed on the platform's mail (RFC 6376 §5.4.1 recommends From, To, Subject, Date,
# Message-ID and the threading ones); From twice guards against an added From.
SIGNED_HEADERS = [
    b"from", b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to",
    b"in-reply-to", b"references", b"mime-version", b"content-type",
    b"list-unsubscribe", b"list-unsubscribe-post",
]  # fmt: skip


@dataclass(frozen=True)
class DkimSigner:
    """Signs the platform's mail (the SMTP relay transport) with d= the platform domain."""

    selector: str
    domain: str
    key: bytes

    @classmethod
    def load(cls, selector: str, domain: str, path: Path) -> DkimSigner:
        return cls(selector, domain.lower(), path.read_bytes())

    def signature(self, mime: bytes) -> bytes:
        """The DKIM-Signature header (with its CRLF) for `mime`, relaxed/relaxed, rsa-sha256."""
        signed: bytes = dkimpy.sign(
            mime,
            self.selector.encode(),
            self.domain.encode(),
            self.key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=SIGNED_HEADERS,
        )
        return signed

    def sign(self, mail: Any) -> Any:
        """`mail` (an Outgoing: the platform relay only sends the hosted address's mail, from
        this domain) with its signature prepended."""
        return replace(mail, mime=self.signature(mail.mime) + mail.mime)
