"""How a list archive's held-out messages are chosen (README.md), fixed before any was read:
every reply (a subject starting Re:, RE:, AW:, Sv: or Antw:, after a list's [tag]) of the
archive, oldest first, leaving out replies about patches (`skip`, a word of the subject) when
asked; every `every`-th of them; kept when its stored text has between 3 and 150 lines (a
person labels each line); deduplicated by Message-ID; a commit whose message the snapshot does
not hold is left out. The archives are
github.com/linux-mailinglist-archives/* (one message per commit, in a file named `m`).

    python -m tests.replies.heldout.sample_list REPO FOLDER EVERY [SKIP]
    # usrp-users: ... usrp 60            openbmc: ... openbmc 50 patch
    # linux-raid: ... raid 33 patch   linux-cifs: ... cifs 24 patch
"""

from __future__ import annotations

import email
import re
import subprocess
import sys
from pathlib import Path

from core.inbound import parse

ANY_TAG = r"\[[^\]]*\]"


def main(repo: str, folder: str, every: int, skip: str = "", tag: str = ANY_TAG) -> None:
    """`tag`: the list's subject tag before Re: (a pattern); any bracketed tag by default."""
    reply = re.compile(rf"^({tag}\s*)?(Re|RE|AW|Sv|Antw):", re.IGNORECASE)
    log = subprocess.run(
        ["git", "-C", repo, "log", "--reverse", "--format=%H%x09%s"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    replies = [
        line.split("\t", 1)[0]
        for line in log
        if reply.match(subject := line.partition("\t")[2])
        and not (skip and skip.lower() in subject.lower())
    ]
    here = Path(__file__).parent / folder
    here.mkdir(exist_ok=True)
    seen: set[str] = set()
    for commit in replies[::every]:
        shown = subprocess.run(["git", "-C", repo, "show", f"{commit}:m"], capture_output=True)
        if shown.returncode != 0:  # a message the snapshot does not hold: left out
            continue
        raw = shown.stdout
        message_id = str(email.message_from_bytes(raw).get("Message-ID", commit)).strip()
        lines = parse(raw).text.splitlines()
        if message_id in seen or not 3 <= len(lines) <= 150:
            continue
        seen.add(message_id)
        (here / f"{folder}_{commit[:12]}.eml").write_bytes(raw)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:5])
