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

The HTML is folded only where the text rules found quoted history too, and only when every word
of `reply_text` is still in the folded HTML: inline answers, or a cut that would hide what the
sender wrote, leave the HTML whole (`None`), as the text rules do when in doubt.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

from bs4 import BeautifulSoup, Comment, NavigableString, PageElement, Tag

from core.inbound.reply import ReplySplit

# Larger HTML is shown whole rather than parsed twice.
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
_TOP = {"[document]", "html", "body"}
_URL_RE = re.compile(r"<?(https?://|mailto:|www\.)\S+", re.IGNORECASE)
_WORD_RE = re.compile(r"\w+")


def fold_html(html: str, split: ReplySplit) -> str | None:
    """`html` without its quoted history, or None when it stays whole."""
    if split.quoted_text is None or len(html) > MAX_FOLD_CHARS or not split.reply_text.strip():
        return None
    if split.reply_text.strip() == split.quoted_text.strip():
        return None  # only a quote: it is what the sender sent
    wanted = _words(split.reply_text)
    needle = _needle(split.quoted_text)
    locators: list[Callable[[BeautifulSoup], PageElement | None]] = [_first_marked]
    locators += [partial(_nth_occurrence, needle, n) for n in range(5) if needle]
    for locate in locators:
        soup = BeautifulSoup(html, "html.parser")
        element = locate(soup)
        if element is None:
            if locate is _first_marked:
                continue
            break  # no further occurrence
        _cut_from(element)
        kept = _words(soup.get_text(" "))
        if kept and wanted <= kept:
            return str(soup)
    return None


# -- where the history starts ------------------------------------------------------------------


def _first_marked(soup: BeautifulSoup) -> Tag | None:
    for element in soup.find_all(True):
        classes = {c.lower().removeprefix("x_") for c in element.get("class") or []}
        ident = str(element.get("id") or "").lower().removeprefix("x_")
        if classes & _CLASSES or ident in _IDS or ident.startswith("yahoo_quoted"):
            return _with_prefix(element)
        if element.name == "blockquote" and str(element.get("type") or "").lower() == "cite":
            return _with_prefix(element)
        if element.name == "div" and "border-top" in str(element.get("style") or "").lower():
            if _FROM_HEADER_RE.match(element.get_text(" ", strip=True)):
                return _with_prefix(element)
    return None


def _with_prefix(element: Tag) -> Tag:
    """The element, or the attribution or rule right above it that belongs to the history."""
    previous = _previous_element(element)
    if previous is None:
        return element
    classes = {c.lower().removeprefix("x_") for c in previous.get("class") or []}
    ident = str(previous.get("id") or "").lower().removeprefix("x_")
    if "moz-cite-prefix" in classes or "gmail_attr" in classes or ident == "appendonsend":
        return previous
    if previous.name == "hr":
        before = _previous_element(previous)
        if before is not None and str(before.get("id") or "").lower().endswith("appendonsend"):
            return before
        return previous
    if element.name == "blockquote":
        words = previous.get_text(" ", strip=True)
        if 0 < len(words) < 300 and words.rstrip().endswith(":"):
            return previous  # "On …, Ana wrote:" above Apple Mail's quote
    return element


def _previous_element(element: Tag) -> Tag | None:
    node = element.previous_sibling
    while node is not None:
        if isinstance(node, Tag):
            if node.name == "br":
                node = node.previous_sibling
                continue
            return node
        if str(node).strip():
            return None  # text between: nothing above belongs to the quote
        node = node.previous_sibling
    return None


def _outermost_start(node: PageElement) -> PageElement | None:
    """The largest element that starts with `node`: nothing the sender wrote is inside it
    before the history (None when the history starts the document: nothing to fold)."""
    element = node
    while element.parent is not None and element.parent.name not in _TOP:
        if any(_has_text(sibling) for sibling in element.previous_siblings):
            return element
        element = element.parent
    if any(_has_text(sibling) for sibling in element.previous_siblings):
        return element
    return None


def _has_text(node: PageElement) -> bool:
    if isinstance(node, Tag):
        return node.name not in ("style", "script", "head", "title") and bool(
            node.get_text().strip()
        )
    return bool(str(node).strip()) and not isinstance(node, Comment)


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


def _nth_occurrence(needle: str, n: int, soup: BeautifulSoup) -> PageElement | None:
    """Where the `n`th occurrence of the text cut's first line starts the history."""
    text, index = _text_index(soup)
    matches = list(re.finditer(re.escape(needle), text))
    if n >= len(matches):
        return None
    position = matches[n].start()
    node = next((node for offset, node in reversed(index) if offset <= position), None)
    return _outermost_start(node) if node is not None else None


def _text_index(soup: BeautifulSoup) -> tuple[str, list[tuple[int, NavigableString]]]:
    """The document's text with its whitespace collapsed, and where each text node starts."""
    parts: list[str] = []
    index: list[tuple[int, NavigableString]] = []
    length = 0
    for node in soup.find_all(string=True):
        if node.parent is not None and node.parent.name in ("script", "style", "head", "title"):
            continue
        chunk = " ".join(str(node).split())
        if not chunk:
            continue
        if parts:
            parts.append(" ")
            length += 1
        index.append((length, node))
        parts.append(chunk)
        length += len(chunk)
    return "".join(parts), index


# -- cutting ------------------------------------------------------------------------------------


def _cut_from(element: PageElement) -> None:
    """Remove the element and everything after it in document order."""
    node: PageElement | None = element
    while node is not None and not isinstance(node, BeautifulSoup):
        for sibling in list(node.next_siblings):
            sibling.extract()
        node = node.parent
    element.extract()


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD_RE.findall(_URL_RE.sub(" ", text))}
