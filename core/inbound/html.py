"""HTML in received mail: its text (for mail without a text part), a copy safe to show, and
the budget every one of them is held to.

HTML comes from anyone, and the parsers it meets are not linear on every input: Python's
`html.parser` (and BeautifulSoup over it) took 27 s for 200 KB of unclosed `<a` tags, and
html5ever (nh3) is quadratic in nesting depth and in unclosed formatting elements (60,000
nested `<div>` made every read of the message take 11-17 s). So every HTML body is first
*screened* by a linear scan of its tags: deeper than `MAX_DEPTH`, or with more than
`MAX_FORMATTING` formatting elements left open, it is not parsed at all; the message keeps its
text and a note says why. What passes the screen goes through nh3 once more, structure kept
(`normalize`), so that what parses it next (the folding, the text) reads well-formed HTML.
"""

from __future__ import annotations

import html as html_entities
import re
from collections import Counter
from collections.abc import Callable
from urllib.parse import unquote

import nh3

# The budget (docs/hardening.md). Real mail stays far below both: a long Outlook thread nests a
# few hundred levels at most, and clients close what they open.
MAX_DEPTH = 1000
MAX_FORMATTING = 200
# html5ever's work grows with each element's depth (its scope checks walk the open elements):
# the sum of the depths of all start tags is held to this (2,000 elements 250 deep; a
# megabyte of flat HTML uses a few percent of it).
MAX_NESTING_WORK = 5_000_000

_TAG_NAME = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]{0,31})")
# Elements without content, and those whose end a parser implies when the next one opens.
_VOID = frozenset(
    "area base basefont bgsound br col embed frame hr image img input keygen link meta param "
    "source track wbr".split()
)
_IMPLIED_END = frozenset("p li dt dd tr td th".split())
# These end only when the open element is one of them (html5ever pops just the current node).
_IMPLIED_END_CURRENT = frozenset("option optgroup rb rt rp rtc".split())
# What HTML parsers keep in their list of active formatting elements, reopening each one in
# every new block until its end tag closes it.
_FORMATTING = frozenset("a b big code em font i nobr s small strike strong tt u".split())


def screen(html: str) -> str | None:
    """Why this HTML is not parsed (too deep, too many formatting elements left open), or None
    when it is within the budget. One pass over its tags: linear in its length."""
    stack: list[str] = []
    open_names: Counter[str] = Counter()
    formatting = 0
    work = 0
    for match in _TAG_NAME.finditer(html):
        name = match.group(2).lower()
        if match.group(1):  # an end tag closes the nearest open element of its name
            if open_names[name]:
                while stack:
                    top = stack.pop()
                    open_names[top] -= 1
                    if top == name:
                        break
                if name in _FORMATTING:
                    formatting = max(0, formatting - 1)
            continue
        if name in _VOID:
            continue
        implied = name in _IMPLIED_END and name in stack[-4:]
        if implied or (name in _IMPLIED_END_CURRENT and stack and stack[-1] == name):
            while stack:  # a new <li> ends the open one, and so on
                top = stack.pop()
                open_names[top] -= 1
                if top == name:
                    break
        stack.append(name)
        open_names[name] += 1
        if name in _FORMATTING:
            formatting += 1  # stays active until its own end tag, whatever closes around it
            if formatting > MAX_FORMATTING:
                return (
                    f"its HTML leaves more than {MAX_FORMATTING} formatting elements open "
                    "(the most any parser here is given)"
                )
        if len(stack) > MAX_DEPTH:
            return f"its HTML is nested more than {MAX_DEPTH} levels deep"
        work += len(stack)
        if work > MAX_NESTING_WORK:
            return "its HTML nests too many elements too deep (the parsing budget is spent)"
    return None


def refusal_note(reason: str) -> str:
    return f"The HTML of this message is not shown: {reason}. Its text is shown instead."


# The structure nh3 keeps for the folding and the text: every element the safe copy may show,
# and the marks clients put on quoted history (class, id, blockquote type, the rule's style).
def normalize(html: str) -> str:
    """`html` as well-formed HTML (nh3, html5ever's tokenizer), scripts and handlers gone, the
    quote marks kept. Only for HTML that passed `screen`."""
    attributes = {tag: set(names) for tag, names in _SAFE_ATTRIBUTES.items()}
    attributes["*"] = _LAYOUT | {"class", "id"}
    attributes["blockquote"] = attributes.get("blockquote", set()) | {"type"}
    return nh3.clean(
        html,
        tags=_SAFE_TAGS,
        clean_content_tags={"script", "style", "title", "head", "template", "noscript"},
        attributes=attributes,
        url_schemes={"http", "https", "mailto", "tel", "data", "cid"},
        url_relative="deny",
        link_rel=None,
        strip_comments=True,
    )


_TEXT_TAGS = {"br", "p", "div", "tr", "td", "th", "li", "blockquote", "hr", "table", "h1", "h2"}
_BREAKING = re.compile(r"</?(?:br|p|div|tr|li|blockquote|hr|table|h[12])>")
_CELL = re.compile(r"</?t[dh]>")
_ANY_TAG = re.compile(r"<[^<>]*>")


def html_to_text(html: str) -> str:
    """The text of `html`, a line per block. Linear: within the budget through nh3 (which
    drops scripts and styles with their content), beyond it by dropping anything tag-shaped."""
    if screen(html) is None:
        text = nh3.clean(
            html,
            tags=_TEXT_TAGS,
            clean_content_tags={"script", "style", "title", "head", "template", "noscript"},
            attributes={},
            strip_comments=True,
        )
        text = _CELL.sub(" ", _BREAKING.sub("\n", text))
    else:
        text = _ANY_TAG.sub("\n", html)
    text = html_entities.unescape(_ANY_TAG.sub("", text))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line).strip()


# -- HTML that is safe to show --------------------------------------------------------------------

# What received HTML may keep: formatting, tables, links and images; never scripts, event
# handlers, forms, frames, embedded objects, SVG, <style> blocks or <base>.
_SAFE_TAGS = (nh3.ALLOWED_TAGS | {"font", "tfoot"}) - {"area", "map"}
_LAYOUT = {"align", "valign", "width", "height", "bgcolor", "dir", "lang", "title", "style"}
_SAFE_ATTRIBUTES: dict[str, set[str]] = {
    tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items() if tag in _SAFE_TAGS
}
_SAFE_ATTRIBUTES["*"] = _LAYOUT
_SAFE_ATTRIBUTES["font"] = {"color", "face", "size"}
_SAFE_ATTRIBUTES["a"] = {"href", "title"}
_SAFE_ATTRIBUTES["img"] = {"src", "alt", "width", "height", "title"}
for _table_tag in ("table", "td", "th"):
    _SAFE_ATTRIBUTES[_table_tag] = _SAFE_ATTRIBUTES.get(_table_tag, set()) | {
        "border", "cellpadding", "cellspacing", "colspan", "rowspan", "nowrap",
    }  # fmt: skip
# Inline CSS that lays text out; nothing that loads a URL (background, list-style-image,
# border-image, cursor, content) or lifts content over the page (position).
_SAFE_STYLE = {
    "color", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "text-align", "text-decoration", "text-indent", "text-transform",
    "line-height", "letter-spacing", "white-space", "word-break", "vertical-align",
    "direction", "display", "width", "height", "max-width", "min-width", "margin",
    "margin-top", "margin-right", "margin-bottom", "margin-left", "padding", "padding-top",
    "padding-right", "padding-bottom", "padding-left", "border", "border-top", "border-right",
    "border-bottom", "border-left", "border-color", "border-style", "border-width",
    "border-collapse", "border-spacing", "border-radius", "list-style-type",
}  # fmt: skip
# Shown instead of a remote image until the reader asks for remote images.
REMOTE_IMAGE_PLACEHOLDER = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='32' height='24'%3E"
    "%3Crect width='32' height='24' fill='%23e5e7eb'/%3E%3C/svg%3E"
)
_DATA_IMAGE_RE = re.compile(r"^data:image/(png|gif|jpeg|jpg|webp|bmp);base64,", re.IGNORECASE)
_LINK_SCHEMES = ("http://", "https://", "mailto:", "tel:")


def safe_html(html: str, *, images: Callable[[str], str | None], remote_images: bool) -> str:
    """`html` made safe to show in a page (nh3, an allow-list): no scripts, event handlers,
    forms or `javascript:` links; links open with rel="noopener noreferrer". `images(cid)`
    gives the URL of the message's own attachment for a `cid:` image (None drops it). Remote
    images become a placeholder unless `remote_images`, so opening a message tells no tracker
    that it was read."""

    def attribute(tag: str, name: str, value: str) -> str | None:
        lowered = value.strip().lower()
        if tag == "img" and name == "src":
            if lowered.startswith("cid:"):
                return images(unquote(value.strip()[4:]).strip("<>"))
            if _DATA_IMAGE_RE.match(lowered):
                return value
            if lowered.startswith(("http://", "https://")):
                return value if remote_images else REMOTE_IMAGE_PLACEHOLDER
            return None
        if name == "href":
            return value if lowered.startswith(_LINK_SCHEMES) else None
        return value

    return nh3.clean(
        html,
        tags=_SAFE_TAGS,
        clean_content_tags={"script", "style", "title", "head", "template", "noscript"},
        attributes=_SAFE_ATTRIBUTES,
        attribute_filter=attribute,
        url_schemes={"http", "https", "mailto", "tel", "data", "cid"},
        url_relative="deny",
        filter_style_properties=_SAFE_STYLE,
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )


# What the stored safe copy calls an inline image: the message's own attachment, by id. The API
# turns it into that attachment's download URL when it shows the message.
_STORED_CID = re.compile(
    r'src="cid:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"'
)


def stored_safe(html: str, inline: dict[str, str]) -> str:
    """The safe copy kept with a received message (`inline`: Content-ID → attachment id), made
    once when it is stored, remote images held back."""
    return safe_html(
        html,
        images=lambda cid: f"cid:{inline[cid]}" if cid in inline else None,
        remote_images=False,
    )


def with_attachment_urls(stored: str, urls: dict[str, str]) -> str:
    """A stored safe copy with each inline image pointing to its download URL (`urls`:
    attachment id → URL); an image of another id is dropped."""
    return _STORED_CID.sub(lambda m: f'src="{urls.get(m.group(1), "")}"', stored)
