"""How the held-out labels were drafted (README.md): a few mechanical conventions, written
before the rules changed and independent of them; a person then read every message and
corrected the drafts (the corrections are in labels.csv's notes).

    python -m tests.replies.heldout.draft_labels notmuch/lkml_1382298775.002978.eml
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.replies.corpus import text_of
from tests.replies.segments import spec

HERE = Path(__file__).parent
INTRO = re.compile(
    r"(wrote|writes|schrieb|écrit|escribió|scritto|schreef|skrev)\b.*:?\s*$|:\s*$|"
    r"^(From|Date|Sent|To|Cc|Subject):\s",
    re.IGNORECASE,
)
OPENER = re.compile(r"^(On|Am|Le|El|At|In message)\b")
ELISION = re.compile(r"^\s*(\.\.\.|\[\.\.\.\]|\[snip\]|<snip>|\[\s*\.\.\.\s*\])\s*$", re.I)


def quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def draft(lines: list[str]) -> list[str]:
    count = len(lines)
    kinds = ["quoted" if quoted(line) else "new" for line in lines]
    # A wrapped continuation between two quoted lines, no blank line around it.
    for i in range(1, count - 1):
        around = (lines[i - 1].strip(">").strip(), lines[i + 1].strip(">").strip())
        if kinds[i] == "new" and lines[i].strip() and kinds[i - 1] == kinds[i + 1] == "quoted":
            if all(around):
                kinds[i] = "quoted"
    # Elision markers between quote blocks.
    for i, line in enumerate(lines):
        if kinds[i] == "new" and ELISION.match(line):
            kinds[i] = "quoted"
    # Up to three introduction lines directly above a quote block.
    for i in range(count):
        if kinds[i] != "quoted" or (i > 0 and kinds[i - 1] == "quoted"):
            continue
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        taken = 0
        while j >= 0 and lines[j].strip() and kinds[j] == "new" and taken < 3:
            if taken == 0 and not INTRO.search(lines[j]):
                break
            if taken > 0 and not (INTRO.search(lines[j]) or OPENER.match(lines[j])):
                break
            kinds[j] = "quoted"
            taken += 1
            j -= 1
    # Blank lines inside quoted runs.
    for i, line in enumerate(lines):
        if line.strip():
            continue
        above = next((j for j in range(i - 1, -1, -1) if lines[j].strip()), None)
        below = next((j for j in range(i + 1, count) if lines[j].strip()), None)
        if above is not None and below is not None and kinds[above] == kinds[below] == "quoted":
            kinds[i] = "quoted"
    # The signature: "-- " and what follows, when no quote follows it.
    for i, line in enumerate(lines):
        if line.rstrip() == "--":
            if "quoted" not in kinds[i + 1 :]:
                kinds[i:] = ["signature" if k == "new" else k for k in kinds[i:]]
            break
    return kinds


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name},{spec(draft(text_of(HERE / name).splitlines()))}")
