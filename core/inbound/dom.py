"""A small element tree over HTML that nh3 wrote (core/inbound/html.py `normalize`): every
element closed, attribute values double-quoted and escaped, `<` in text escaped, no comments.
Reading it takes one pass of one regular expression, and every operation the folding needs
(document order, text, cutting everything after a node) is linear, where BeautifulSoup over
Python's html.parser took quadratic time on thousands of void elements or siblings.
"""

from __future__ import annotations

import html as entities
import re
from collections.abc import Iterator

VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())
_NO_ATTRIBUTES: dict[str, str] = {}
_NO_CHILDREN: list[Node] = []  # text nodes' (never appended to)
_ATTRIBUTE = re.compile(r'([^\s="/>]+)(?:="([^"]*)")?')


class Node:
    """An element (`tag`), or a run of text (`tag` None, its source in `raw`)."""

    __slots__ = ("attrs", "children", "parent", "raw", "tag")

    def __init__(
        self,
        tag: str | None,
        raw: str = "",
        attrs: dict[str, str] | None = None,
        parent: Node | None = None,
    ) -> None:
        self.tag = tag
        self.raw = raw  # a text node's escaped source; an element's start tag
        self.attrs = attrs or _NO_ATTRIBUTES
        self.children: list[Node] = [] if tag is not None else _NO_CHILDREN
        self.parent = parent

    @property
    def is_text(self) -> bool:
        return self.tag is None

    def get(self, name: str) -> str:
        return self.attrs.get(name, "")

    @property
    def classes(self) -> set[str]:
        return {c.lower() for c in self.get("class").split()}

    def iter(self) -> Iterator[Node]:
        """This node and every node inside it, in document order (iterative)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def elements(self) -> Iterator[Node]:
        return (n for n in self.iter() if n.tag is not None and n is not self)

    def texts(self) -> Iterator[Node]:
        return (n for n in self.iter() if n.tag is None)

    def text(self, separator: str = "") -> str:
        return separator.join(entities.unescape(n.raw) for n in self.texts())

    def has_text(self) -> bool:
        return any(n.raw.strip() for n in self.texts())

    def previous_siblings(self) -> list[Node]:
        """The nodes before this one in its parent, nearest first."""
        if self.parent is None:
            return []
        siblings = self.parent.children
        return siblings[: siblings.index(self)][::-1]

    def remove(self) -> None:
        """Take this node (and what is inside it) out of the tree."""
        if self.parent is not None:
            self.parent.children.remove(self)
            self.parent = None

    def cut_from(self) -> None:
        """Remove this node and everything after it in document order."""
        node: Node = self
        first = True
        while node.parent is not None:
            siblings = node.parent.children
            position = siblings.index(node)
            del siblings[position if first else position + 1 :]
            first = False
            node = node.parent

    def html(self) -> str:
        """The tree written out again, as nh3 wrote it."""
        out: list[str] = []
        stack: list[tuple[Node, bool]] = [(self, False)]
        while stack:
            node, closing = stack.pop()
            if closing:
                out.append(f"</{node.tag}>")
                continue
            if node.tag is None or node.tag == "#root":
                out.append(node.raw)
            else:
                out.append(node.raw)
                if node.tag in VOID:
                    continue
                stack.append((node, True))
            stack.extend((child, False) for child in reversed(node.children))
        return "".join(out)


def parse(html: str) -> Node:
    """The tree of `html` (nh3's output, where every `<` starts a tag and no tag holds a `>`).
    Anything else is read as well as it can be: an end tag with nothing open of its name is
    dropped, what is left open is closed at the end."""
    root = Node("#root")
    current = root
    pieces = html.split("<")
    if pieces[0]:
        root.children.append(Node(None, raw=pieces[0], parent=root))
    for piece in pieces[1:]:
        tag, closed, text = piece.partition(">")
        if not closed:  # a stray "<": text, as a parser would keep it
            current.children.append(Node(None, raw="&lt;" + piece, parent=current))
            continue
        if tag.startswith("/"):
            name = tag[1:].strip().lower()
            node: Node | None = current
            while node is not None and node.tag != name:
                node = node.parent
            if node is not None and node.parent is not None:
                current = node.parent
        elif tag and (tag[0].isalpha()):
            name, _, attributes = tag.partition(" ")
            name = name.rstrip("/").lower()
            attrs = (
                {k.lower(): entities.unescape(v) for k, v in _ATTRIBUTE.findall(attributes)}
                if attributes
                else {}
            )
            element = Node(name, raw=f"<{tag}>", attrs=attrs, parent=current)
            current.children.append(element)
            if name not in VOID and not tag.endswith("/"):
                current = element
        if text:
            current.children.append(Node(None, raw=text, parent=current))
    return root
