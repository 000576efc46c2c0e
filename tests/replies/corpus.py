"""The reply corpus and its labels, and the measures the reply-text rules are held to.

Each labelled message gives `cut`: the line of its text where the quoted history starts (empty
when there is none). The text is what Recruitmail stores: the parsed text part of an `.eml`, the
text of an `.html` file as `html_to_text` renders it, a `.txt` file as it is. The reply a reader
should see is the text above the cut; a message that is only a quote keeps it all.

Measures, over the corpus:
- quoted-history detection: precision and recall of "has quoted text";
- lost lines: messages whose reply lost a line the sender wrote (the target is none);
- folding accuracy: messages whose reply is exactly the labelled one.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.inbound import parse
from core.inbound.html import html_to_text

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Labelled:
    name: str
    text: str
    cut: int | None
    note: str

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @property
    def expected_reply(self) -> list[str]:
        above = _significant(self.lines[: self.cut] if self.cut is not None else self.lines)
        return above or _significant(self.lines)

    @property
    def has_quote(self) -> bool:
        return self.cut is not None


def text_of(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".eml":
        return parse(raw).text
    decoded = raw.decode("utf-8", "replace")
    if path.suffix == ".html":
        return html_to_text(decoded)
    return decoded.replace("\r\n", "\n")


def load() -> list[Labelled]:
    with (HERE / "labels.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        Labelled(
            row["file"],
            text_of((HERE / row["file"]).resolve()),
            int(row["cut"]) if row["cut"] else None,
            row["note"],
        )
        for row in rows
    ]


def _significant(lines: list[str]) -> list[str]:
    return [" ".join(line.split()) for line in lines if line.strip()]


@dataclass
class Score:
    """Counts over the corpus for one way of splitting replies."""

    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    true_negative: int = 0
    exact: int = 0
    lost: list[str] = field(default_factory=list)
    misfolded: list[str] = field(default_factory=list)
    total: int = 0

    @property
    def precision(self) -> float:
        found = self.true_positive + self.false_positive
        return self.true_positive / found if found else 1.0

    @property
    def recall(self) -> float:
        wanted = self.true_positive + self.false_negative
        return self.true_positive / wanted if wanted else 1.0

    @property
    def folding_accuracy(self) -> float:
        return self.exact / self.total if self.total else 1.0

    def line(self, name: str) -> str:
        return (
            f"{name:24} precision {self.precision:6.1%}  recall {self.recall:6.1%}  "
            f"lost-line messages {len(self.lost):3d}  folding {self.folding_accuracy:6.1%}  "
            f"({self.total} messages)"
        )


# A splitter: the text in, (the reply a reader sees, whether quoted text was found) out.
Splitter = Callable[[str], tuple[str, bool]]


def score(splitter: Splitter, corpus: list[Labelled]) -> Score:
    result = Score()
    for item in corpus:
        reply, found = splitter(item.text)
        result.total += 1
        if item.has_quote and found:
            result.true_positive += 1
        elif found:
            result.false_positive += 1
        elif item.has_quote:
            result.false_negative += 1
        else:
            result.true_negative += 1
        got = _significant(reply.splitlines())
        present = set(got)
        if any(line not in present for line in item.expected_reply):
            result.lost.append(item.name)
        if got == item.expected_reply:
            result.exact += 1
        else:
            result.misfolded.append(item.name)
    return result
