"""The reply-text rules beside the libraries that do the job, on the same labelled corpus.

    pip install quotequail mail-parser-reply talon email-reply-parser   # not project dependencies
    python bench/reply_libraries.py

Each library's reply is scored as Recruitmail's is (tests/replies/corpus.py): detection of
quoted history (precision, recall), messages whose reply lost a line the sender wrote, and
folding accuracy; then line by line on the development set and the held-out mail
(tests/replies/segments.py), a line a library leaves out of its reply counting as history to
it. A library that is not installed is skipped. The figures recorded in docs/inbound.md came
from this script.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from common import save

from core.inbound.segments import split_reply
from tests.replies.corpus import load, score

LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "da", "sv", "pl", "cs", "ja"]


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def recruitmail(text: str) -> tuple[str, bool]:
    """The sender's own lines (new and signature segments) and whether any were folded."""
    split = split_reply(text)
    own = split.reply_text + ("\n" + split.signature if split.signature else "")
    return own, split.quoted_text is not None


def quotequail_(text: str) -> tuple[str, bool]:
    import quotequail

    parts = quotequail.quote(text)
    reply = "".join(part for shown, part in parts if shown)
    return reply, any(not shown for shown, _ in parts)


def mail_parser_reply(text: str) -> tuple[str, bool]:
    from mailparser_reply import EmailReplyParser

    mail = EmailReplyParser(languages=LANGUAGES).read(text)
    reply = mail.replies[0].content if mail.replies else text
    return reply, len(mail.replies) > 1 or not _same(reply, text)


def talon_(text: str) -> tuple[str, bool]:
    from talon import quotations

    reply = quotations.extract_from_plain(text)
    return reply, not _same(reply, text)


def email_reply_parser(text: str) -> tuple[str, bool]:
    from email_reply_parser import EmailReplyParser

    reply = EmailReplyParser.parse_reply(text)
    return reply, not _same(reply, text)


def _line_rules(splitter):
    """A library's reply as line kinds: a line it left out of the reply is history to it."""

    def kinds(text: str) -> list[str]:
        reply, _ = splitter(text)
        kept = {" ".join(line.split()) for line in reply.splitlines()}
        return [
            "new" if not line.strip() or " ".join(line.split()) in kept else "quoted"
            for line in text.splitlines()
        ]

    return kinds


def segments_tables(splitters) -> None:
    """Line by line (tests/replies/segments.py), on the development set and on the held-out
    mail: precision and recall of history, exact messages, lines the sender wrote called
    history."""
    from core.inbound.segments import line_kinds
    from tests.replies import segments

    raw: dict[str, dict] = {}
    for title, cases in (("development", segments.development()), ("heldout", segments.heldout())):
        tallies, elapsed = {}, {}
        for name, splitter in splitters:
            rules = line_kinds if name == "recruitmail" else _line_rules(splitter)
            started = time.perf_counter()
            tallies[name] = segments.measure(cases, rules, lambda c: "all")["all"]
            elapsed[name] = 1000 * (time.perf_counter() - started) / len(cases)
        print()
        print(segments.table(f"{title} ({len(cases)} messages)", tallies))
        print(", ".join(f"{name} {ms:.2f} ms/message" for name, ms in elapsed.items()))
        raw[title] = {
            name: {
                "messages": t.messages,
                "precision": t.precision,
                "recall": t.recall,
                "exact": t.exact,
                "lost_lines": t.false_history,
                "lost_messages": len(t.lost_messages),
                "ms_per_message": elapsed[name],
            }
            for name, t in tallies.items()
        }
    save("reply_libraries", "reply rules beside the libraries, line by line", [], raw)


def main() -> None:
    corpus = load()
    quoted = sum(c.has_quote for c in corpus)
    print(f"{len(corpus)} labelled messages, {quoted} with quoted history")
    installed = []
    for name, splitter in [
        ("recruitmail", recruitmail),
        ("quotequail", quotequail_),
        ("mail-parser-reply", mail_parser_reply),
        ("talon", talon_),
        ("email-reply-parser", email_reply_parser),
    ]:
        try:
            splitter("Hello")
        except ImportError:
            print(f"{name:24} not installed")
            continue
        installed.append((name, splitter))
        if name == "recruitmail":
            # The cut labels call an inline answer's quotes part of the reply; the rules now
            # fold each quote, so they are measured line by line only (below).
            continue
        started = time.perf_counter()
        result = score(splitter, corpus)
        elapsed = time.perf_counter() - started
        print(f"{result.line(name)}  {1000 * elapsed / len(corpus):6.2f} ms/message")
    segments_tables(installed)


if __name__ == "__main__":
    main()
