"""The quoted history folded out of received HTML: `reply_html`, the HTML view of `reply_text`.

Mail clients mark where they put the history they quote, each its own way. The first such
element, with the attribution or rule just above it, and everything after it in document
order, is the history:

- Gmail: `div.gmail_quote` (`gmail_quote_container`, `blockquote.gmail_quote`);
- Apple Mail, iOS, Thunderbird: `blockquote type="cite"`, with Thunderbird's
  `div.moz-cite-prefix` or the attribution line above it;
- Outlook on the web and the new Outlook: `div#divRplyFwdMsg` (and the `hr` and
  `div#appendonsend` above it); Outlook for iOS, Android and Mac:
  `#mail-editor-reference-message-container`; Outlook for Windows: the `border-top` rule over
  the From/Sent header block (`div.OutlookMessageHeader` in old versions);
- Yahoo: `div.yahoo_quoted`; Proton: `.protonmail_quote`; Zimbra: `#zwchr`; Zoho:
  `.zmail_extra`.

Outlook's web view prefixes every class and id it relays with `x_`, so those count too.
Without any such element, the text rules' cut (core/inbound/reply.py) is found in the HTML's
text and cut at the block that holds it.

It reads the HTML as nh3 normalised it (core/inbound/html.py), with the small tree of
core/inbound/dom.py: every step is linear in the HTML's length.

The HTML is folded only where the text rules found quoted history too, and only when every word
of `reply_text` is still in the folded HTML. When cutting from the first history on would hide
an answer (a quote first and the answer under it, or answers between quotes), each outermost
`blockquote` is folded by itself instead, with the attribution right above it, as Gmail shows
an interleaved reply; when that too would hide a word of the reply, the HTML stays whole
(`None`), as the text rules keep a line when in doubt.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

from core.inbound import dom
from core.inbound.dom import Node
from core.inbound.segments import NEW, ReplySplit

# Larger HTML is shown whole rather than parsed again and again.
MAX_FOLD_CHARS = 1_000_000

_CLASSES = {
    "gmail_quote",
    "gmail_quote_container",
    "yahoo_quoted",
    "protonmail_quote",
    "zmail_extra",
    "outlookmessageheader",
}
_IDS = {"divrplyfwdmsg", "mail-editor-reference-message-container", "zwchr"}
_FROM_HEADER_RE = re.compile(
    r"^\s*(from|von|de|da|van|fra|från|od|от|lähettäjä|kimden|feladó|afzender|remetente)\s*:",
    re.IGNORECASE,
)
_TOP = {"#root", "html", "body"}
_URL_RE = re.compile(r"<?(https?://|mailto:|www\.)\S+", re.IGNORECASE)
_WORD_RE = re.compile(r"\w+")


def fold_html(html: str, split: ReplySplit) -> str | None:
    """`html` (as `normalize` wrote it) without its quoted history, or None when it stays
    whole. The tree is read once; each place the history may start is tried by the words it
    would keep, and the first that keeps every word of the reply is cut."""
    if split.quoted_text is None or len(html) > MAX_FOLD_CHARS or not split.reply_text.strip():
        return None
    if split.reply_text.strip() == split.quoted_text.strip() or (
        split.segments and not any(s.kind == NEW and s.text.strip() for s in split.segments)
    ):
        return None  # only a quote: it is what the sender sent
    wanted = _words(split.reply_text)
    tree = dom.parse(html)
    nodes = list(tree.iter())
    position = {id(node): i for i, node in enumerate(nodes)}
    for element in _candidates(tree, _needle(split.quoted_text)):
        before = nodes[: position[id(element)]]
        kept = _words(" ".join(node.text() for node in before if node.is_text))
        if kept and wanted <= kept:
            element.cut_from()
            return tree.html()
    return _fold_each_quote(tree, wanted)


def _fold_each_quote(tree: Node, wanted: set[str]) -> str | None:
    """The answers written above, below or between quoted blocks: each outermost
    `blockquote`, with the attribution right above it, folded by itself (as Gmail shows an
    interleaved reply), when what is left keeps every word of the reply."""
    quotes = [
        element
        for element in tree.elements()
        if element.tag == "blockquote" and not _inside_quote(element)
    ]
    if not quotes:
        return None
    for element in quotes:
        prefix = _with_prefix(element)
        if prefix is not element:
            prefix.remove()
        element.remove()
    kept = _words(tree.text(" "))
    return tree.html() if kept and wanted <= kept else None


def _inside_quote(element: Node) -> bool:
    parent = element.parent
    while parent is not None:
        if parent.tag == "blockquote":
            return True
        parent = parent.parent
    return False


def _candidates(tree: Node, needle: str) -> Iterator[Node]:
    """Where the history may start: the first client mark, then up to five places where the
    text cut's first line occurs."""
    marked = _first_marked(tree)
    if marked is not None:
        yield marked
    if not needle:
        return
    text, index = _text_index(tree)
    for match in itertools.islice(re.finditer(re.escape(needle), text), 5):
        node = next((node for offset, node in reversed(index) if offset <= match.start()), None)
        start = _outermost_start(node) if node is not None else None
        if start is not None:
            yield start


# -- where the history starts ------------------------------------------------------------------


def _ident(element: Node) -> str:
    return element.get("id").lower().removeprefix("x_")


def _first_marked(tree: Node) -> Node | None:
    for element in tree.elements():
        classes = {c.removeprefix("x_") for c in element.classes}
        ident = _ident(element)
        if classes & _CLASSES or ident in _IDS or ident.startswith("yahoo_quoted"):
            return _with_prefix(element)
        if element.tag == "blockquote" and element.get("type").lower() == "cite":
            return _with_prefix(element)
        if element.tag == "div" and "border-top" in element.get("style").lower():
            if _FROM_HEADER_RE.match(" ".join(element.text(" ").split())):
                return _with_prefix(element)
    return None


def _with_prefix(element: Node) -> Node:
    """The element, or the attribution or rule right above it that belongs to the history."""
    previous = _previous_element(element)
    if previous is None:
        return element
    classes = {c.removeprefix("x_") for c in previous.classes}
    if (
        "moz-cite-prefix" in classes
        or "gmail_attr" in classes
        or _ident(previous) == "appendonsend"
    ):
        return previous
    if previous.tag == "hr":
        before = _previous_element(previous)
        if before is not None and before.get("id").lower().endswith("appendonsend"):
            return before
        return previous
    if element.tag == "blockquote":
        words = " ".join(previous.text(" ").split())
        if 0 < len(words) < 300 and words.rstrip().endswith(":"):
            return previous  # "On …, Ana wrote:" above Apple Mail's quote
    return element


def _previous_element(element: Node) -> Node | None:
    for node in element.previous_siblings():
        if node.is_text:
            if node.raw.strip():
                return None  # text between: nothing above belongs to the quote
            continue
        if node.tag == "br":
            continue
        return node
    return None


def _outermost_start(node: Node) -> Node | None:
    """The largest element that starts with `node`: nothing the sender wrote is inside it
    before the history (None when the history starts the document: nothing to fold)."""
    element = node
    while element.parent is not None and element.parent.tag not in _TOP:
        if any(sibling.has_text() for sibling in element.previous_siblings()):
            return element
        element = element.parent
    if any(sibling.has_text() for sibling in element.previous_siblings()):
        return element
    return None


# -- the text cut, found in the HTML -----------------------------------------------------------


def _needle(quoted: str) -> str:
    """The start of the quoted history, without quote marks, as HTML's text shows it (a short
    first line, "From:" in bold, joined to the next)."""
    words: list[str] = []
    for line in quoted.splitlines():
        words += line.lstrip("> \t").split()
        if len(" ".join(words)) >= 12:
            break
    return " ".join(words)[:60]


def _text_index(tree: Node) -> tuple[str, list[tuple[int, Node]]]:
    """The document's text with its whitespace collapsed, and where each text node starts."""
    parts: list[str] = []
    index: list[tuple[int, Node]] = []
    length = 0
    for node in tree.texts():
        chunk = " ".join(node.text().split())
        if not chunk:
            continue
        if parts:
            parts.append(" ")
            length += 1
        index.append((length, node))
        parts.append(chunk)
        length += len(chunk)
    return "".join(parts), index


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD_RE.findall(_URL_RE.sub(" ", text))}
