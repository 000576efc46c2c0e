"""Composing, the capability word `templates`: what a recruiter's message says before it is
sent. Stored templates with merge fields (grammar.py, fields.py), signatures (signatures.py) and
interview invitations (invitations.py). Sending it is `send`'s and `bulk`'s; this decides its words.

`draft()` is the one rule for a message's subject, text and HTML, for a single send, a bulk
recipient and a preview alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.templates import grammar, signatures
from core.templates.fields import choose_variant


@dataclass(frozen=True)
class Draft:
    subject: str
    text: str
    html: str | None
    language: str | None  # the template variant's, when a template was used


def draft(
    *,
    values: Mapping[str, Any],
    variants: Sequence[Mapping[str, Any]] | None = None,
    language: str | None = None,
    default_language: str | None = None,
    subject: str | None = None,
    text: str | None = None,
    html: str | None = None,
    literal: bool = True,
    signature: signatures.Signature | None = None,
) -> Draft:
    """The message's words.

    With `variants` (a template's), the variant for `language` (then `default_language`, then
    the first) is rendered; a `subject`, `text` or `html` given beside it replaces that part.
    Parts given without a template are sent as written when `literal` (a single send), or
    rendered as templates (a bulk send, whose text is one template for all). A field without a
    fallback that is empty raises grammar.MissingFields; the signature goes under the text.
    """
    chosen: str | None = None
    # Each part: (source, is_template). A template's parts are templates; a part given beside
    # it, or without one, is one only when not `literal`.
    parts: dict[str, tuple[str | None, bool]] = {
        "subject": (subject, not literal),
        "text": (text, not literal),
        "html": (html, not literal),
    }
    if variants:
        variant = choose_variant(variants, language, default_language)
        chosen = str(variant["language"])
        for name in parts:
            if parts[name][0] is None:
                parts[name] = (variant.get(name), True)
    if parts["subject"][0] is None or parts["text"][0] is None:
        raise ValueError("subject and text are needed without a template")
    sources = [source if is_template else None for source, is_template in parts.values()]
    out = grammar.render(sources[0], sources[1], sources[2], values)
    subject_out = out.subject if parts["subject"][1] else parts["subject"][0]
    text_out = out.text if parts["text"][1] else parts["text"][0]
    html_out = out.html if parts["html"][1] else parts["html"][0]
    assert subject_out is not None and text_out is not None
    text_out, html_out = signatures.append(text_out, html_out, signature)
    return Draft(subject_out, text_out, html_out, chosen)
