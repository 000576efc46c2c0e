"""Reply segments, labelled and measured.

A label gives each line of a message's stored text a kind: `new` (what the sender wrote),
`quoted` (the history their client quoted, with its attribution), `signature`, `forwarded`
(a message passed on). Blank lines carry no kind of their own and are not counted. The
measures are over the other lines, history (`quoted` and `forwarded`) against the rest:

- precision: of the lines the rules call history, how many are;
- recall: of the history lines, how many the rules call history;
- lost lines: lines the sender wrote that the rules call history (hidden from the reader);
- exact: messages whose every line the rules put on the right side.

Two sets: the development set (`labels.csv` converted: its `cut` made into lines, and
`segments.csv` for the messages with inline answers), which the rules were written against,
and the held-out set (`heldout/labels.csv`), labelled before the rules changed and never tuned
on (heldout/README.md).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.replies.corpus import load as load_cuts
from tests.replies.corpus import text_of

HERE = Path(__file__).parent
HISTORY = {"quoted", "forwarded"}


@dataclass(frozen=True)
class Case:
    name: str
    source: str
    text: str
    kinds: list[str]  # one per line of `text`

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @property
    def style(self) -> str:
        """top (the answer above the history), bottom (below it), interleaved (between
        blocks of it), or none."""
        sides = [
            "h" if k in HISTORY else "n"
            for line, k in zip(self.lines, self.kinds, strict=False)
            if line.strip() and k != "signature"
        ]
        runs = "".join(c for i, c in enumerate(sides) if i == 0 or sides[i - 1] != c)
        if "h" not in runs:
            return "none"
        if "n" not in runs:
            return "quote only"
        if runs in ("nh", "hn"):
            return "top" if runs == "nh" else "bottom"
        return "interleaved"


def parse_segments(spec: str, count: int) -> list[str]:
    kinds = ["new"] * count
    for part in filter(None, spec.split(";")):
        kind, _, span = part.partition(":")
        first, _, last = span.partition("-")
        for i in range(int(first), min(int(last), count - 1) + 1):
            kinds[i] = kind
    return kinds


def heldout() -> list[Case]:
    folder = HERE / "heldout"
    with (folder / "labels.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    cases = []
    for row in rows:
        text = text_of(folder / row["file"])
        count = len(text.splitlines())
        if row["file"].startswith("usrp/"):
            source = "usrp-users list"
        elif row["file"].startswith("openbmc/"):
            source = "openbmc list"
        elif row["file"].startswith("raid/"):
            source = "linux-raid list"
        elif row["file"].startswith("cifs/"):
            source = "linux-cifs list"
        else:
            source = "notmuch " + ("lkml" if "/lkml_" in row["file"] else "lists")
        cases.append(Case(row["file"], source, text, parse_segments(row["segments"], count)))
    return cases


def development() -> list[Case]:
    """The development set: each labelled cut as lines (history from the cut on), except the
    messages whose inline answers `segments.csv` labels line by line."""
    with (HERE / "segments.csv").open(newline="", encoding="utf-8") as handle:
        inline = {row["file"]: row["segments"] for row in csv.DictReader(handle)}
    cases = []
    for labelled in load_cuts():
        count = len(labelled.lines)
        if labelled.name in inline:
            kinds = parse_segments(inline[labelled.name], count)
        elif labelled.cut is None:
            kinds = ["new"] * count
        else:
            kinds = ["new"] * labelled.cut + ["quoted"] * (count - labelled.cut)
        source = labelled.name.split("/")[0].lstrip(".")
        cases.append(Case(labelled.name, source, labelled.text, kinds))
    return cases


@dataclass
class Tally:
    messages: int = 0
    exact: int = 0
    true_history: int = 0
    false_history: int = 0  # the sender's lines called history: lost
    missed_history: int = 0
    lost_messages: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        called = self.true_history + self.false_history
        return self.true_history / called if called else 1.0

    @property
    def recall(self) -> float:
        real = self.true_history + self.missed_history
        return self.true_history / real if real else 1.0

    def add(self, case: Case, predicted: list[str]) -> None:
        self.messages += 1
        wrong = 0
        lost = 0
        for line, truth, guess in zip(case.lines, case.kinds, predicted, strict=True):
            if not line.strip():
                continue
            is_history, called = truth in HISTORY, guess in HISTORY
            if is_history and called:
                self.true_history += 1
            elif called:
                self.false_history += 1
                lost += 1
            elif is_history:
                self.missed_history += 1
            wrong += is_history != called
        self.exact += wrong == 0
        if lost:
            self.lost_messages.append(case.name)


def measure(
    cases: Iterable[Case], rules: Callable[[str], list[str]], by: Callable[[Case], str]
) -> dict[str, Tally]:
    """Tallies per group (`by`), and "all"."""
    tallies: dict[str, Tally] = {"all": Tally()}
    for case in cases:
        predicted = rules(case.text)
        for key in dict.fromkeys(("all", by(case))):
            tallies.setdefault(key, Tally()).add(case, predicted)
    return tallies


def table(title: str, tallies: dict[str, Tally]) -> str:
    rows = [
        f"| {title} | messages | precision | recall | exact | lost lines (messages) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, t in sorted(tallies.items(), key=lambda kv: (kv[0] != "all", kv[0])):
        rows.append(
            f"| {key} | {t.messages} | {t.precision:.1%} | {t.recall:.1%} | "
            f"{t.exact}/{t.messages} | {t.false_history} ({len(t.lost_messages)}) |"
        )
    return "\n".join(rows)


def spec(kinds: list[str]) -> str:
    """Kinds as the labels write them: `quoted:0-2;new:3-6`."""
    runs: list[list] = []
    for i, kind in enumerate(kinds):
        if runs and runs[-1][0] == kind:
            runs[-1][2] = i
        else:
            runs.append([kind, i, i])
    return ";".join(f"{kind}:{first}-{last}" for kind, first, last in runs)


OUTPUTS = {"development": HERE / "segments_output.csv", "heldout": HERE / "heldout" / "output.csv"}


def outputs(cases: list[Case], rules: Callable[[str], list[str]]) -> str:
    """The rules' output for every labelled row, beside its label, as CSV."""
    rows = ["file,label,rules,agree"]
    for case in cases:
        predicted = rules(case.text)
        agree = all(
            (truth in HISTORY) == (guess in HISTORY)
            for line, truth, guess in zip(case.lines, case.kinds, predicted, strict=True)
            if line.strip()
        )
        rows.append(f"{case.name},{spec(case.kinds)},{spec(predicted)},{'yes' if agree else 'no'}")
    return "\n".join(rows) + "\n"


def main() -> None:
    """`python -m tests.replies.segments`: the tables docs/inbound.md shows, and the rules'
    output written beside the labels."""
    from core.inbound.segments import line_kinds

    for name, cases in (("development", development()), ("heldout", heldout())):
        print(table(f"{name}: source", measure(cases, line_kinds, lambda c: c.source)))
        print()
        print(table(f"{name}: style", measure(cases, line_kinds, lambda c: c.style)))
        print()
        OUTPUTS[name].write_text(outputs(cases, line_kinds), encoding="utf-8")


if __name__ == "__main__":
    main()
