"""What the sender wrote in this message, apart from the history their client quoted under it.

`split_reply(text)` finds where the quoted history starts and cuts there, by rules that hold
across mail clients and languages (docs/inbound.md lists them, and tests/replies/ measures them):

- `>` quoting: the last block of quoted lines, with the attribution line above it, is the
  history; a line the sender wrote after a quote (an inline or bottom-posted answer) keeps
  everything above it in the reply. A signature or a list footer after the last quote does not
  count as an answer.
- An attribution ("On … wrote:", "Am … schrieb …:", "Le … a écrit :", "El … escribió:",
  "Il … ha scritto:", "Op … schreef …:", and twenty more languages), over up to three lines,
  with a date or an address in it, followed by text that is not `>`-quoted: the history starts
  there (Gmail, Apple Mail, Outlook for Mac and mobile clients quote without marks).
- A header block (From/Sent/To/Subject in the sender's language, bold or not), with the rule
  or "Original Message" line above it: Outlook and webmails.
- A forward or original-message separator ("---------- Forwarded message ---------",
  "Begin forwarded message:", "-----Ursprüngliche Nachricht-----", …).
- Text after a mobile signature ("Sent from my iPhone", "Gesendet von Outlook für Android"): the
  original the phone appended.

Never losing what the sender wrote matters more than folding every quote: when in doubt nothing
is cut, and a message that is only a quote keeps it all in `reply_text`. `signature` is the
sign-off at the end of the reply ("-- " and what follows, or a mobile signature line), when it
can be told apart; it stays part of `reply_text`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.inbound.forwards import FORWARD_MARKER_RE
from core.inbound.headers import ADDRESS_IN_TEXT_RE as _ADDRESS_RE

# Lines longer than this are never an attribution, a header or a separator (and regular
# expressions never run over a 750 KB line).
_MAX_LINE = 1000

_VERBS = (
    r"wrote|writes|has written|schrieb|geschrieben|a\s+[ée]crit|[ée]crit|escribi[óo]|"
    r"ha\s+scritto|scrisse|schreef|heeft\s+geschreven|escreveu|skrev|kirjoitti|"
    r"napisa[łl]\s*\(a\)|napisa[łl]a?|napsal[a]?|[íi]rta|yazd[\u0131i]|написал\s*\(\u0430\)|"
    r"написала?|a\s+scris|rakst[īi]ja|ra[šs][ėe]|έγραψε|写道|寫道|작성"
)
_VERB_RE = re.compile(rf"(?<!\w)({_VERBS})(?!\w)", re.IGNORECASE)
# The verb ends the attribution, or comes before the name ("Am … schrieb John <…>:").
_ATTRIBUTION_END_RE = re.compile(
    rf"(?<!\w)({_VERBS})(?!\w)(\s*\(a\))?(\s*[^:\n]{{0,200}})?\s*:?\s*(-{{2,}})?\s*$",
    re.IGNORECASE,
)

_DATE_RE = re.compile(
    r"\d{1,2}[:.]\d{2}|\b(19|20)\d{2}\b|\b\d{1,2}[./-]\d{1,2}[./-]\d{2,4}\b|\d+年\d+月",
)
_QUOTE_RE = re.compile(r"^\s*>")
_SEPARATOR_RE = re.compile(r"^\s*([-_=*~]\s?){4,}\s*$")
_ORIGINAL_RE = re.compile(
    r"^[\s>*]*-{2,}\s*(original message|original|urspr[üu]ngliche nachricht|"
    r"message d'origine|mensaje original|messaggio originale|oorspronkelijk bericht|"
    r"oprindelig (besked|meddelelse)|opprinnelig melding|ursprungligt meddelande|"
    r"alkuper[äa]inen viesti|wiadomo[śs][ćc] oryginalna|исходное сообщение|"
    r"пересылаемое сообщение|message transmis|mensagem original)\s*-{2,}\s*$|"
    r"^[\s>*]*forwarded message:\s*$",
    re.IGNORECASE,
)
_FROM_KEYS = (
    r"from|von|de|da|van|od|fra|fr[åa]n|l[äa]hett[äa]j[äa]|felad[óo]|от|от кого|kimden|"
    r"exp[ée]diteur|remitente|mittente|afzender|寄件者|发件人|差出人"
)
_OTHER_KEYS = (
    r"sent|date|to|cc|bcc|subject|reply-to|on behalf of|gesendet|datum|an|kopie|betreff|"
    r"envoy[ée]( le)?|[àa]|objet|copie [àa]|enviado( el)?|fecha|para|asunto|inviato|data|"
    r"oggetto|verzonden|aan|onderwerp|wys[łl]ano|do|temat|sendt|til|emne|dato|skickat|till|"
    r"[äa]mne|l[äa]hetetty|vastaanottaja|aihe|elk[üu]ldve|c[íi]mzett|t[áa]rgy|отправлено|"
    r"кому|тема|дата|g[öo]nderildi|kime|konu|message du|sujet|日期|收件者|主旨|件名|宛先|"
    r"送信日時"
)
_HEADER_RE = re.compile(
    rf"^\s*\*?\s*(?P<key>{_FROM_KEYS}|{_OTHER_KEYS})\s*\*?\s*:\s*\*?(?P<value>.*)$",
    re.IGNORECASE,
)
_FROM_RE = re.compile(rf"^(?:{_FROM_KEYS})$", re.IGNORECASE)
_MOBILE_RE = re.compile(
    r"^\s*(sent from|sent with|get outlook for|envoy[ée] (de|à partir de|depuis)|"
    r"gesendet (von|mit)|von meinem .{1,40} gesendet|enviado (desde|de)|inviato da|"
    r"verzonden (vanaf|met|van)|verstuurd (vanaf|met)|wys[łl]ane z|skickat fr[åa]n|"
    r"sendt fra|l[äa]hetetty)\b",
    re.IGNORECASE,
)
_SIGNATURE_RE = re.compile(r"^(-- ?|--|—+|_{2,})\s*$")
# A signature or footer after the last quote, at most this many lines, is not an answer.
_TRAILER_LINES = 30
# A reply's sign-off: at most this many lines after its delimiter.
_SIGNATURE_LINES = 10


@dataclass(frozen=True)
class ReplySplit:
    reply_text: str
    quoted_text: str | None
    signature: str | None
    # The line where the quoted history starts (None: nothing was cut).
    cut: int | None


def split_reply(text: str) -> ReplySplit:
    """The reply, the quoted history and the signature of `text`, with \\n line ends."""
    text = text.replace("\r\n", "\n")
    lines = text.splitlines(keepends=True)
    plain = [_clean(line) for line in lines]
    cut = _find_cut(plain)
    if cut is None:
        return ReplySplit(text, None, _signature(plain, len(plain)), None)
    reply = "".join(lines[:cut]).rstrip()
    quoted = "".join(lines[cut:]).strip("\r\n") or None
    if not reply.strip():  # only a quote: it is what the sender sent
        return ReplySplit(text, quoted, None, cut)
    return ReplySplit(reply, quoted, _signature(plain, cut), cut)


def _clean(line: str) -> str:
    return line.rstrip("\r\n").replace("\ufeff", "").replace("\u200b", "")


def _blank(line: str) -> bool:
    return not line.strip()


def _find_cut(lines: list[str]) -> int | None:
    unmarked = _first_unmarked(lines)
    end = unmarked if unmarked is not None else len(lines)
    quoted = _last_quote_block(lines, end)
    if quoted is not None:
        return quoted
    return unmarked


# -- `>` quoting ------------------------------------------------------------------------------


def _is_quote(lines: list[str], i: int) -> bool:
    if _QUOTE_RE.match(lines[i]):
        return True
    # A quoted line the sender's client re-wrapped: a short continuation, in lower case,
    # right under a long quoted line.
    line = lines[i].strip()
    if i == 0 or not line or not _QUOTE_RE.match(lines[i - 1]):
        return False
    above = lines[i - 1].rstrip()
    if above.endswith("="):  # a quoted-printable soft break, left in stored text
        return len(line) < 60
    return line[0].islower() and len(line) < 60 and len(above) >= 60


def _last_quote_block(lines: list[str], end: int) -> int | None:
    """Where the trailing block of `>`-quoted lines (with its attribution) starts, when nothing
    the sender wrote follows it before `end`."""
    quotes = [i for i in range(end) if _is_quote(lines, i)]
    if not quotes:
        return None
    last_quote = quotes[-1]
    after = [i for i in range(last_quote + 1, end) if not _blank(lines[i])]
    if after and not _is_trailer(lines, after[0], end):
        return None  # an answer below the quote: nothing to fold
    # Up from the last quote, over quoted and blank lines: the block's first line.
    start = last_quote
    i = last_quote - 1
    while i >= 0 and (_blank(lines[i]) or _is_quote(lines, i)):
        if _is_quote(lines, i):
            start = i
        i -= 1
    attribution = _attribution_ending_at(lines, i, strong=False) if i >= 0 else None
    return attribution if attribution is not None else start


def _is_trailer(lines: list[str], first: int, end: int) -> bool:
    """A signature or a list footer: a delimiter line, and few lines after it."""
    if not _SIGNATURE_RE.match(lines[first].strip()):
        return False
    return sum(1 for i in range(first, end) if not _blank(lines[i])) <= _TRAILER_LINES


# -- markers of a history quoted without marks -----------------------------------------------


def _first_unmarked(lines: list[str]) -> int | None:
    """The first line of a quoted history that carries no `>` marks: a header block, a
    separator, an attribution followed by unmarked text, or text after a mobile signature."""
    for i, line in enumerate(lines):
        if _blank(line) or len(line) > _MAX_LINE or _QUOTE_RE.match(line):
            continue  # `>`-quoted lines are the other rule's
        if _ORIGINAL_RE.match(line) or (
            FORWARD_MARKER_RE.match(line) and not _SEPARATOR_RE.match(line)
        ):
            return i
        header = _header_block_start(lines, i)
        if header is not None:
            return header
        attribution = _attribution_ending_at(lines, i, strong=True)
        if attribution is not None and not _followed_by_quote(lines, i):
            return attribution
        if _MOBILE_RE.match(line):
            following = _next_text(lines, i + 1)
            if following is not None and not _QUOTE_RE.match(lines[following]):
                return following
    return None


def _next_text(lines: list[str], start: int) -> int | None:
    for i in range(start, len(lines)):
        if not _blank(lines[i]):
            return i
    return None


def _followed_by_quote(lines: list[str], i: int) -> bool:
    following = _next_text(lines, i + 1)
    return following is not None and bool(_QUOTE_RE.match(lines[following]))


def _attribution_ending_at(lines: list[str], end: int, *, strong: bool) -> int | None:
    """The first line of an attribution (over one to three lines) that ends at line `end`.
    Strong: with a date or an address, and the verb at its end or before the name; weak (right
    above a quote): any line ending in an attribution verb and a colon."""
    last = lines[end].strip()
    if not last or len(last) > _MAX_LINE:
        return None
    if not (last.endswith(":") or last.endswith("-") or _VERB_RE.search(last)):
        return None
    for size in (1, 2, 3):
        start = end - size + 1
        if start < 0:
            break
        window = _join(lines[start : end + 1])
        if window is None:
            break
        if _is_attribution(window, strong=strong):
            return _attribution_start(lines, start, end)
    return None


def _attribution_start(lines: list[str], start: int, end: int) -> int:
    """Up to three lines: an attribution that begins with a continuation (an address, a
    bracket, a lower-case word), or under a line ending with a comma, was wrapped: it goes on
    above, to the line that opens it."""
    while end - start < 2 and start > 0:
        first = lines[start].strip()
        above = lines[start - 1].strip()
        if not above or _QUOTE_RE.match(lines[start - 1]) or len(above) > _MAX_LINE:
            break
        wrapped = first[:1] in "<([" or first[:1].islower() or above.endswith(",")
        if not wrapped:
            break
        if above.endswith((".", "!", "?")):
            break
        start -= 1
    return start


def _join(lines: list[str]) -> str | None:
    parts = []
    for line in lines:
        text = line.strip()
        if not text or len(text) > _MAX_LINE:
            return None
        parts.append(text)
    # A quoted-printable soft break left in stored text ("w=" + "rote:").
    joined = ""
    for part in parts:
        joined = joined[:-1] + part if joined.endswith("=") else f"{joined} {part}".strip()
    return joined.lstrip(">* ").strip("-").strip()


# No attribution a client writes is longer (a long name, an address, a date and the verb fit in
# a third of it); a longer window is text, and the patterns below never scan it.
_MAX_ATTRIBUTION = 600


def _is_attribution(window: str, *, strong: bool) -> bool:
    if len(window) > _MAX_ATTRIBUTION:
        return False
    has_verb = _ATTRIBUTION_END_RE.search(window) is not None
    has_date = _DATE_RE.search(window) is not None
    has_address = "@" in window and _ADDRESS_RE.search(window) is not None
    if has_verb and (has_date or has_address):
        return True
    # No verb: a date and an address, ending with a colon ("2017-11-24 16:32 Ann <a@b.c>:").
    if has_date and has_address and window.endswith(":") and len(window) < 300:
        return True
    return not strong and has_verb and window.endswith(":")


def _header_block_start(lines: list[str], i: int) -> int | None:
    """The first line of an Outlook-style header block that has a From line at `i`, with the
    separator or "Original Message" line right above it."""
    match = _HEADER_RE.match(lines[i])
    if match is None or not _FROM_RE.match(match.group("key").strip()):
        return None
    keys = {match.group("key").strip().lower()}
    for j in range(max(0, i - 4), min(len(lines), i + 8)):
        other = _HEADER_RE.match(lines[j]) if j != i and len(lines[j]) <= _MAX_LINE else None
        if other is not None:
            keys.add(other.group("key").strip().lower())
    if len(keys) < 2:
        return None
    start = i
    # Up over the header lines above the From line (Date/Subject first, "Message du :").
    while start > 0 and _HEADER_RE.match(lines[start - 1]) and len(lines[start - 1]) < 300:
        start -= 1
    above = start - 1
    while above >= 0 and _blank(lines[above]) and start - above <= 2:
        above -= 1
    if above >= 0 and (_SEPARATOR_RE.match(lines[above]) or _ORIGINAL_RE.match(lines[above])):
        return above
    return start


# -- signature ---------------------------------------------------------------------------------


def _signature(lines: list[str], end: int) -> str | None:
    """The sign-off closing the reply: a "-- " delimiter and the few lines after it, or a
    mobile signature as the last line."""
    text = [i for i in range(end) if not _blank(lines[i])]
    if len(text) < 2:
        return None
    if _MOBILE_RE.match(lines[text[-1]]) and len(lines[text[-1]]) < 120:
        return lines[text[-1]].strip()
    for position in range(len(text) - 1, max(-1, len(text) - _SIGNATURE_LINES - 2), -1):
        i = text[position]
        if _SIGNATURE_RE.match(lines[i].strip()) and position > 0:
            return "\n".join(lines[j] for j in range(i, end)).strip() or None
    return None
