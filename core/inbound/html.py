"""HTML in received mail: its text (for mail without a text part), and a copy safe to show."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import unquote

import nh3


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "tr", "li", "blockquote", "hr"):
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        elif tag == "blockquote":
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.chunks.append(data)


def html_to_text(html: str) -> str:
    extractor = _TextExtractor()
    try:
        extractor.feed(html)
        extractor.close()
    except Exception:
        return html
    lines = [" ".join(line.split()) for line in "".join(extractor.chunks).splitlines()]
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
