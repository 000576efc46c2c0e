"""Signatures under outgoing mail: a user's own, a legal entity's, or the company's default.

Which one goes by the sender's name on the message, as the sender choice does (activities/send
names the sender the same way): mail in an employee's name carries their own signature (when
they set one), mail in the company's or an entity's name carries that entity's, else the
company's. HTML signatures are made safe with the rules for received HTML, when saved."""

from __future__ import annotations

import html as html_lib
from dataclasses import dataclass

from core.inbound.html import safe_html

# The separator mail clients recognise (RFC 3676, 4.3): "-- " alone on a line.
SEPARATOR = "-- "
MAX_SIGNATURE_CHARS = 10_000


@dataclass(frozen=True)
class Signature:
    text: str | None
    html: str | None


def clean_html(value: str | None) -> str | None:
    """A signature's HTML as it is stored: sanitised, remote images kept (a logo)."""
    if value is None or not value.strip():
        return None
    return safe_html(value, images=lambda _cid: None, remote_images=True)


def choose(
    *,
    employee_mode: bool,
    user: Signature | None,
    entity: Signature | None,
    company: Signature | None,
) -> Signature | None:
    def some(sig: Signature | None) -> bool:
        return sig is not None and bool((sig.text or "").strip() or (sig.html or "").strip())

    if employee_mode and some(user):
        return user
    for candidate in (entity, company):
        if some(candidate):
            return candidate
    return None


def append(text: str, html: str | None, signature: Signature | None) -> tuple[str, str | None]:
    """The text and HTML with the signature under them."""
    if signature is None:
        return text, html
    sig_text = (signature.text or "").strip("\n")
    if sig_text:
        text = f"{text.rstrip()}\n\n{SEPARATOR}\n{sig_text}\n"
    if html is not None:
        sig_html = signature.html or (
            "<br>".join(html_lib.escape(line) for line in sig_text.split("\n")) if sig_text else ""
        )
        if sig_html:
            html = f'{html}\n<div class="signature">-- <br>{sig_html}</div>'
    return text, html
