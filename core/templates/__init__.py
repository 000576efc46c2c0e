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


@dataclass(frozen=True)
class Preview:
    subject: str
    text: str
    html: str | None
    missing: list[str]  # the fields a send would be refused for


def preview(
    variant: Mapping[str, Any],
    values: Mapping[str, Any],
    signature: signatures.Signature | None = None,
) -> Preview:
    """A variant as a candidate (or sample data) would get it, with the signature, each empty
    field without a fallback standing as "{{ field }}" where it is and listed in `missing`.
    Each part is rendered with its own gaps: a field with a fallback in one part and none in
    another is a gap in that other part only."""
    parts: dict[str, str | None] = {}
    gaps: dict[str, None] = {}
    for part in ("subject", "text", "html"):
        source = variant.get(part)
        if source is None:
            parts[part] = None
            continue
        missing = grammar.missing([(part, source)], values)
        gaps.update(dict.fromkeys(missing))
        rendered = grammar.render(
            source if part == "subject" else None,
            source if part == "text" else None,
            source if part == "html" else None,
            _marked(values, missing),
        )
        parts[part] = getattr(rendered, part)
    text, html = signatures.append(parts["text"] or "", parts["html"], signature)
    return Preview(parts["subject"] or "", text, html, list(gaps))


def _marked(values: Mapping[str, Any], paths: list[str]) -> dict[str, Any]:
    """`values` with each of `paths` standing as "{{ path }}"."""
    marked: dict[str, Any] = {**values}
    for path in paths:
        node = marked
        head, _, last = path.rpartition(".")
        for part in head.split("."):
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[last] = "{{ " + path + " }}"
    return marked
