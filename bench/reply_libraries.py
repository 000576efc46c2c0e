"""The reply-text rules beside the libraries that do the job, on the same labelled corpus.

    pip install quotequail mail-parser-reply talon email-reply-parser   # not project dependencies
    python bench/reply_libraries.py

Each library's reply is scored as Recruitmail's is (tests/replies/corpus.py): detection of
quoted history (precision, recall), messages whose reply lost a line the sender wrote, and
folding accuracy. A library that is not installed is skipped. The figures recorded in
docs/inbound.md came from this script.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from core.inbound.reply import split_reply
from tests.replies.corpus import load, score

LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "da", "sv", "pl", "cs", "ja"]


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def recruitmail(text: str) -> tuple[str, bool]:
    split = split_reply(text)
    return split.reply_text, split.quoted_text is not None


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


def main() -> None:
    corpus = load()
    quoted = sum(c.has_quote for c in corpus)
    print(f"{len(corpus)} labelled messages, {quoted} with quoted history")
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
        started = time.perf_counter()
        result = score(splitter, corpus)
        elapsed = time.perf_counter() - started
        print(f"{result.line(name)}  {1000 * elapsed / len(corpus):6.2f} ms/message")


if __name__ == "__main__":
    main()
