"""The markers of a quoted history, in the languages and clients Recruitmail knows: what
core/inbound/segments.py reads a received text by (docs/inbound.md lists them, and
tests/replies/ measures them).

- An attribution ("On … wrote:", "Am … schrieb …:", "Le … a écrit :", "El … escribió:",
  "Il … ha scritto:", "Op … schreef …:", and twenty more languages), over up to three lines,
  wrapped or cut by a quoted-printable soft break, with a date or an address in it (strong), or
  any line ending in such a verb and a colon right above a quote (weak).
- A header block (From/Sent/To/Subject in the sender's language, bold or not), with the rule
  or "Original Message" line above it: Outlook and webmails.
- A forward or original-message separator ("---------- Forwarded message ---------",
  "Begin forwarded message:", "-----Ursprüngliche Nachricht-----", …).
- Text after a mobile signature ("Sent from my iPhone", "Gesendet von Outlook für Android"): the
  original the phone appended.
- The sign-off delimiter ("-- ") and mobile signature lines.
"""

from __future__ import annotations

import re

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
# The longest line taken for a greeting between an attribution and its quote ("Hi Patrick.").
_GREETING = 30
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
# A reply's sign-off: at most this many lines after its delimiter.
_SIGNATURE_LINES = 10


def _clean(line: str) -> str:
    return line.rstrip("\r\n").replace("\ufeff", "").replace("\u200b", "")


def _blank(line: str) -> bool:
    return not line.strip()


# -- markers of a history quoted without marks -----------------------------------------------


def _first_unmarked(lines: list[str], start: int = 0) -> int | None:
    """The first line of a quoted history that carries no `>` marks, from line `start` on: a
    header block, a separator, an attribution followed by unmarked text, or text after a
    mobile signature."""
    for i in range(start, len(lines)):
        line = lines[i]
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
    """The next text is a `>` quote, or one short line (a greeting the sender wrote between the
    attribution and the quote it introduces) and then a quote."""
    following = _next_text(lines, i + 1)
    if following is None:
        return False
    if _QUOTE_RE.match(lines[following]):
        return True
    after = _next_text(lines, following + 1)
    short = len(lines[following].strip()) <= _GREETING
    return short and after is not None and bool(_QUOTE_RE.match(lines[after]))


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
        # A line ending with a comma opens an attribution when it carries the date or the
        # address ("On Tue, 1 Mar 2011 at 18:02,"); a greeting ("Hi,") does not.
        opens = above.endswith(",") and (any(c.isdigit() for c in above) or "@" in above)
        wrapped = first[:1] in "<([" or first[:1].islower() or opens
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
