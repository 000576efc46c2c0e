"""A received message's text as segments: what the sender wrote (`new`), the history their
client quoted (`quoted`), their sign-off (`signature`) and a message passed on (`forwarded`),
in order, together holding every line.

Each line gets a kind, by rules that hold across clients and languages:

- A `>`-quoted line is history, wherever it stands (Supercite's " LK> " too): above the answer
  (bottom-posting, a quote first), between answers (interleaved, at any depth), or below. A
  line the sender's client re-wrapped out of a quoted line (a short lower-case continuation
  under a long quoted line, or after a quoted-printable soft break) is history too. After
  leading spaces, `>` followed by anything but a space, a `>` or the end of the line is text,
  and so is `>=` anywhere (`>= 2 years`). A client set to another mark (`% `, `| `, `: `)
  quotes with it: its lines are history when those behind the mark carry an attribution or
  `>` quotes; otherwise (a table, pasted comments) the mark is text.
- The line or lines introducing a block of quoted lines are history with it: an attribution
  ("On … wrote:", in the languages core/inbound/reply.py knows, over up to three lines, wrapped
  or not), any short line ending with a colon that names a date or an address, or a header
  block (From/Date, in the sender's language) right above the quote.
- History quoted without marks (a header block under a rule or "Original Message", an
  attribution followed by unmarked text, a forward's separator, what a phone appended under
  its signature) runs from its first line to the end, as core/inbound/reply.py finds it; under
  a forward's separator it is `forwarded`. A header block or attribution followed by `>` lines
  introduces them instead, and the text after them stays the sender's.
- The sign-off: a "-- " delimiter and at most ten lines after it, at the end of the last run of
  the sender's lines, or a mobile signature line ending it.
- Everything else is `new`: a line whose kind is in doubt is the sender's, and no rule hides a
  line that is not history by one of the rules above.

Blank lines join the segment they sit in; between two kinds, the history side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.inbound import reply as _reply
from core.inbound.forwards import FORWARD_MARKER_RE
from core.inbound.headers import ADDRESS_IN_TEXT_RE
from core.inbound.model import Segment

NEW, QUOTED, SIGNATURE, FORWARDED = "new", "quoted", "signature", "forwarded"
HISTORY = frozenset({QUOTED, FORWARDED})
# A `>` mark: at the start of the line, or after spaces when a space, another `>` or the end of
# the line follows it; `>=` is a comparison (`>= 2 years`), not a mark.
_MARK_RE = re.compile(r"^(>(?!=)|\s+>(?=[\s>]|$))")
# An introduction line: short, ending with a colon.
_MAX_INTRO = 300
# Blank lines a client leaves between an introduction and its quote (Apple Mail on iOS: four).
_MAX_BLANKS = 4
_MAX_DEPTH = 12
_ORIGINAL_WORDS_RE = re.compile(
    r"original|urspr[üu]ngliche|d'origine|oorspronkelijk|oprindelig|opprinnelig|ursprungligt|"
    r"alkuper|oryginalna|исходное",
    re.IGNORECASE,
)
_SUPERCITE_RE = re.compile(r"^\s+([A-Z]{1,4})>(\s|$)")
# Outlook's "Mark my comments with": a name in brackets before the sender's comment.
_COMMENT_RE = re.compile(r"^\[(?:[A-Z][\w'.-]*,? ){1,3}[A-Z][\w'.-]*\]\s+\S")
# Another quote mark a mail client can be set to (mutt's `indent_string`: "% ", "| ", ": ").
_OTHER_MARK_RE = re.compile(r"^([%|:])(?: |$)")
# An introduction that is no "On … wrote:" but ends with the verb ("...and then Ann said...").
_SAID_RE = re.compile(r"\b(said|wrote|writes)\s*(\.\.\.|…|:)\s*$", re.IGNORECASE)
# Outlook for Mac's history: indented four spaces, from its first lines on.
_INDENT = "    "
_INDENT_SEEN = 3
# The last block of a text that a mail system added: Mailman's footer, a confidentiality notice.
_TRAILER_LINES = 8
# Python's prompt and a statement after it (`>>> import sys`, `>>> sys.path`, `>>> x = 1`).
_PROMPT_RE = re.compile(
    r"^>>>( (import |from |print\(|for |if |def |class |with |help\(|quit\(|exit\(|"
    r"[A-Za-z_][\w.]*\s*(=|\(|\[|$)).*)?$"
)
_LIST_RULE_RE = re.compile(r"^\s*_{20,}\s*$")
_LIST_FOOTER_RE = re.compile(r"\bmailing list\b|\bunsubscribe\b|/listinfo/", re.IGNORECASE)
_NOTICE_RE = re.compile(
    r"\b(confidentiality notice|disclaimer\b|(is|are) (intended )?(solely )?for the (sole )?use of"
    r"|confidential\b.{0,120}\b(intended|recipient))",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ReplySplit:
    # What the sender wrote: the `new` segments joined (a blank line between two), or the whole
    # text when it has none (a message that is only a quote is what the sender sent).
    reply_text: str
    # The `quoted` and `forwarded` segments joined; None when there is no history.
    quoted_text: str | None
    # The sign-off ending the sender's text, when it can be told apart.
    signature: str | None
    # The first line of history (None: none).
    cut: int | None
    segments: tuple[Segment, ...] = ()


def split_reply(text: str) -> ReplySplit:
    """The reply, the quoted history, the sign-off and the segments of `text` (\\n line
    ends)."""
    text = text.replace("\r\n", "\n")
    found = tuple(segments(text))
    own = [_trim(s.text) for s in found if s.kind == NEW and s.text.strip()]
    history = [_trim(s.text) for s in found if s.kind in HISTORY and s.text.strip()]
    signature = next((_trim(s.text) for s in found if s.kind == SIGNATURE), None) or None
    cut, line = None, 0
    for segment in found:
        if segment.kind in HISTORY:
            cut = line
            break
        line += segment.text.count("\n") + 1
    if not own:  # only a quote (or nothing): it is what the sender sent
        return ReplySplit(text, "\n\n".join(history) or None, None, cut, found)
    return ReplySplit("\n\n".join(own), "\n\n".join(history) or None, signature, cut, found)


def _trim(text: str) -> str:
    """Without the blank lines around it (the indentation of its first line kept)."""
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def line_kinds(text: str) -> list[str]:
    """One kind per line of `text` (`text.splitlines()`)."""
    lines = [_reply._clean(line) for line in text.replace("\r\n", "\n").splitlines()]
    count = len(lines)
    kinds = [NEW] * count
    quoted = [_is_quoted(lines, i) for i in range(count)]
    _unmark_prompts(lines, quoted)
    for i in _other_marks(lines):
        quoted[i] = True
    unmarked = _first_unmarked(lines, quoted)
    end = count
    if unmarked is not None:
        kind = FORWARDED if _forward_marker(lines[unmarked]) else QUOTED
        for i in range(unmarked, count):
            kinds[i] = kind
        end = unmarked
        if kind == QUOTED:
            _answers_inside(lines, kinds, unmarked)
    for i in range(end):
        if quoted[i]:
            kinds[i] = QUOTED
    for start in _block_starts(lines, quoted, end):
        intro = _intro_above(lines, start, kinds)
        if intro is not None:
            for i in range(intro, start):
                if kinds[i] == NEW:
                    kinds[i] = QUOTED
    _mark_signature(lines, kinds)
    _mark_trailer(lines, kinds)
    _place_blanks(lines, kinds)
    return kinds


def segments(text: str) -> list[Segment]:
    """The text as runs of lines of one kind, in order (every line in one of them)."""
    lines = text.replace("\r\n", "\n").splitlines()
    found: list[Segment] = []
    start = 0
    kinds = line_kinds(text)
    for i in range(1, len(lines) + 1):
        if i == len(lines) or kinds[i] != kinds[start]:
            found.append(Segment(kinds[start], "\n".join(lines[start:i])))
            start = i
    return found


# -- marks -------------------------------------------------------------------------------------


def _marked(line: str) -> bool:
    if not _MARK_RE.match(line):
        return False
    # A rule drawn with `>` (">>>>>>>>>>>>") marks nothing: no client quotes that deep.
    text = line.strip()
    return not (len(text) > _MAX_DEPTH and text == ">" * len(text))


def _is_quoted(lines: list[str], i: int) -> bool:
    line = lines[i]
    if _closes_a_link(lines, i):
        return False
    if _marked(line) or _supercited(lines, i):
        return True
    # A quoted line the sender's client re-wrapped: a short continuation in lower case under a
    # long quoted line, or after a quoted-printable soft break.
    text = line.strip()
    if i == 0 or not text or not _marked(lines[i - 1]):
        return False
    above = lines[i - 1].rstrip()
    if above.endswith("="):
        return len(text) < 60
    return text[0].islower() and len(text) < 60 and len(above) >= 60


def _other_marks(lines: list[str]) -> list[int]:
    """The lines quoted with another mark than `>` ("% On … wrote:", "% > …", "% text"): every
    line that starts with the mark, when the lines behind it quote (an attribution among them,
    or at least two `>` lines: a quote inside the quote). A mark that never quotes (a table's
    "| a | b |", a comment "% note") marks nothing."""
    by_mark: dict[str, list[int]] = {}
    for i, line in enumerate(lines):
        match = _OTHER_MARK_RE.match(line)
        if match is not None:
            by_mark.setdefault(match.group(1), []).append(i)
    found: list[int] = []
    for rows in by_mark.values():
        if len(rows) < 2:
            continue
        inner = [lines[i][2:] for i in rows]
        nested = sum(1 for text in inner if _MARK_RE.match(text)) >= 2
        if nested or any(
            _reply._attribution_ending_at(inner, k, strong=True) is not None
            for k in range(len(inner))
        ):
            found.extend(rows)
    return found


def _closes_a_link(lines: list[str], i: int) -> bool:
    """A `>` that closes a link the sender's client wrapped (`<` then the address, then
    `>. and the sentence goes on`): no space after it, and a `<` left open just above."""
    line = lines[i]
    if len(line) < 2 or line[0] != ">" or line[1] in "> \t=":
        return False
    above = ""
    for j in range(i - 1, max(i - 3, -1), -1):
        if not lines[j].strip():
            break
        above = lines[j] + above
    return above.count("<") > above.count(">")


def _depth(line: str) -> int:
    return line[: len(line) - len(line.lstrip(" >"))].count(">")


def _unmark_prompts(lines: list[str], quoted: list[bool]) -> None:
    """Python's prompt (`>>> import sys`) is not a quote three deep: when a message holds no
    quote less deep and every `>>>` line reads as a statement, they are the sender's own
    session."""
    marked = [i for i, is_quoted in enumerate(quoted) if is_quoted and _marked(lines[i])]
    if not marked or any(_depth(lines[i]) < 3 for i in marked):
        return
    if all(_PROMPT_RE.match(lines[i].rstrip()) for i in marked):
        for i in marked:
            quoted[i] = False


def _supercited(lines: list[str], i: int) -> bool:
    """Emacs Supercite's and Gnus's marks: the author's initials before the `>`, after a space
    (" LK> "), on this line and the next or previous line of text (a console prompt, "mysql> ",
    is in lower case and starts the line)."""
    match = _SUPERCITE_RE.match(lines[i])
    if match is None:
        return False
    mark = match.group(1) + ">"
    above = next((j for j in range(i - 1, -1, -1) if lines[j].strip()), None)
    below = next((j for j in range(i + 1, len(lines)) if lines[j].strip()), None)
    return any(j is not None and lines[j].lstrip().startswith(mark) for j in (above, below))


def _block_starts(lines: list[str], quoted: list[bool], end: int) -> list[int]:
    """The first line of each run of quoted lines (blank lines inside a run do not end it)."""
    starts = []
    previous = False
    for i in range(end):
        if not lines[i].strip():
            continue
        if quoted[i] and not previous:
            starts.append(i)
        previous = quoted[i]
    return starts


# -- introductions -----------------------------------------------------------------------------


def _intro_above(lines: list[str], start: int, kinds: list[str]) -> int | None:
    """The first line of what introduces the quote starting at `start`, if anything does: the
    non-blank line above it (at most four blank lines between) ends an attribution, a header
    block, or a short line with a colon naming a date or an address."""
    j = start - 1
    blanks = 0
    while j >= 0 and not lines[j].strip():
        j -= 1
        blanks += 1
    if j < 0 or blanks > _MAX_BLANKS or kinds[j] != NEW:
        return None
    attribution = _reply._attribution_ending_at(lines, j, strong=False)
    if attribution is not None:
        return attribution
    header = _header_above(lines, j)
    if header is not None:
        return header
    line = lines[j].strip()
    if line.endswith(":") and len(line) <= _MAX_INTRO and _names_date_or_address(line):
        return _reply._attribution_start(lines, j, j)
    if len(line) <= _MAX_INTRO and _SAID_RE.search(line):
        return j
    return None


def _names_date_or_address(line: str) -> bool:
    if _reply._DATE_RE.search(line):
        return True
    return "@" in line and ADDRESS_IN_TEXT_RE.search(line) is not None


def _header_above(lines: list[str], j: int) -> int | None:
    """A header block (From plus another header, in any language the rules know) ending at
    line `j`: its first line."""
    i = j
    while i >= 0 and lines[i].strip() and _reply._HEADER_RE.match(lines[i]) and j - i < 8:
        i -= 1
    first = i + 1
    if first > j:
        return None
    above = first - 1
    while above >= 0 and not lines[above].strip() and first - above <= 2:
        above -= 1
    if above >= 0 and (
        _reply._SEPARATOR_RE.match(lines[above]) or _reply._ORIGINAL_RE.match(lines[above])
    ):
        first = above  # the rule or "Original Message" line over the header block
    keys = set()
    for k in range(i + 1, j + 1):
        match = _reply._HEADER_RE.match(lines[k])
        if match is not None:
            keys.add(match.group("key").strip().lower())
    has_from = any(_reply._FROM_RE.match(key) for key in keys)
    return first if has_from and len(keys) >= 2 else None


# -- history without marks ---------------------------------------------------------------------


def _first_unmarked(lines: list[str], quoted: list[bool]) -> int | None:
    """Where history quoted without marks starts (core/inbound/reply.py's markers), unless what
    it finds only introduces `>`-quoted lines."""
    # Quoted lines are the other rules'; each introduction found is read once (linear).
    # A quoted line stays visible as a quote (">"), so that what comes after a quote block is
    # not taken for what follows a mobile signature or an attribution directly.
    plain = [">" if quoted[i] else line for i, line in enumerate(lines)]
    start = 0
    while True:
        found = _reply._first_unmarked(plain, start)
        if found is None:
            return None
        end = _introduction_end(lines, quoted, found)
        if _forward_marker(lines[found]) or end is None:
            return found  # under a forward's marker, everything is the forwarded message
        # A header block or an attribution above `>` lines: it introduces them; look further.
        for i in range(found, end):
            plain[i] = ""
        start = end


def _introduction_end(lines: list[str], quoted: list[bool], start: int) -> int | None:
    """Where the quote starts that the lines from `start` introduce (up to eight lines, over
    one blank run), or None when what follows them is not quoted."""
    i = start
    while i < len(lines) and not quoted[i] and i - start <= 8:
        if not lines[i].strip() and i > start and not lines[i - 1].strip():
            return None  # two blank lines: what came above was a block of its own
        if not lines[i].strip() and _next_text(lines, i) is not None:
            following = _next_text(lines, i)
            return following if following is not None and quoted[following] else None
        i += 1
    return i if i < len(lines) and quoted[i] else None


def _next_text(lines: list[str], start: int) -> int | None:
    for i in range(start, len(lines)):
        if lines[i].strip() and (i > start or not lines[start].strip()):
            return i
    return None


def _forward_marker(line: str) -> bool:
    """A forward's marker ("---------- Forwarded message ---------"), not a reply's "Original
    Message" line or a bare rule."""
    return (
        bool(FORWARD_MARKER_RE.match(line))
        and not _reply._SEPARATOR_RE.match(line)
        and not _ORIGINAL_WORDS_RE.search(line)
    )


# -- answers written into a history without marks ---------------------------------------------


def _answers_inside(lines: list[str], kinds: list[str], start: int) -> None:
    """The sender's own lines inside a history quoted without `>` marks, where the client
    marks them another way: Outlook's comments prefaced with the sender's name ("[Ren, Zhikui]
    This change was made…", until a blank line), and Outlook for Mac's history indented four
    spaces under its attribution, where the answers are the lines not indented."""
    count = len(lines)
    indented = _indented_history(lines, start)
    i = start + 1
    while i < count:
        line = lines[i]
        if _COMMENT_RE.match(line):
            while i < count and lines[i].strip():
                kinds[i] = NEW
                i += 1
            continue
        if indented and line.strip() and not line.startswith(_INDENT) and not _marked(line):
            kinds[i] = NEW
        i += 1


def _indented_history(lines: list[str], start: int) -> bool:
    """Whether the history under the attribution at `start` is indented four spaces (its first
    lines of text, at least three, all are)."""
    if _reply._attribution_ending_at(lines, start, strong=True) is None:
        return False
    text = [line for line in lines[start + 1 : start + 40] if line.strip()][:_INDENT_SEEN]
    return len(text) >= _INDENT_SEEN and all(line.startswith(_INDENT) for line in text)


# -- sign-off and blank lines ------------------------------------------------------------------


def _mark_signature(lines: list[str], kinds: list[str]) -> None:
    """The sign-off ending the last run of the sender's lines."""
    own = [i for i, kind in enumerate(kinds) if kind == NEW and lines[i].strip()]
    if len(own) < 2:
        return
    last = own[-1]
    run_start = last
    while run_start > 0 and kinds[run_start - 1] == NEW:
        run_start -= 1
    if _reply._MOBILE_RE.match(lines[last]) and len(lines[last]) < 120:
        kinds[last] = SIGNATURE
        return
    delimiters = [
        i for i in range(run_start, last + 1) if _reply._SIGNATURE_RE.match(lines[i].strip())
    ]
    if not delimiters or delimiters[-1] == own[0]:
        return
    first = delimiters[-1]
    if sum(1 for i in range(first, last + 1) if lines[i].strip()) > _reply._SIGNATURE_LINES + 1:
        return
    for i in range(first, last + 1):
        kinds[i] = SIGNATURE


def _mark_trailer(lines: list[str], kinds: list[str]) -> None:
    """What a mail system adds after everything, history included, is not history: a mailing
    list's footer (a rule of underscores, then "… mailing list", Mailman's form) or a
    confidentiality notice, as the last block of the text."""
    last = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].strip()), None)
    if last is None or kinds[last] not in HISTORY:
        return
    start = last
    while start > 0 and lines[start - 1].strip() and last - start < _TRAILER_LINES:
        start -= 1
    block = lines[start : last + 1]
    footer = next((k for k, line in enumerate(block) if _LIST_RULE_RE.match(line)), None)
    if footer is not None and any(_LIST_FOOTER_RE.search(line) for line in block[footer:]):
        start += footer
    elif not (start == 0 or not lines[start - 1].strip()) or not _NOTICE_RE.search(" ".join(block)):
        return
    for i in range(start, last + 1):
        kinds[i] = SIGNATURE


def _place_blanks(lines: list[str], kinds: list[str]) -> None:
    """A blank line takes the kind around it; between two kinds, the history side (so the
    sender's segments hold no trailing blank lines), else the kind above it."""
    count = len(lines)
    i = 0
    while i < count:
        if lines[i].strip():
            i += 1
            continue
        j = i
        while j < count and not lines[j].strip():
            j += 1
        above = kinds[i - 1] if i > 0 else None
        below = kinds[j] if j < count else None
        if above is None:
            kind = below or NEW
        elif below is None or above == below:
            kind = above
        elif below in HISTORY:
            kind = below
        elif above in HISTORY:
            kind = above
        else:
            kind = above
        for k in range(i, j):
            kinds[k] = kind
        i = j
