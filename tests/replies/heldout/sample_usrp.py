"""How the usrp-users held-out messages were chosen (README.md), fixed before any was read:
every reply (a subject starting Re:, RE:, AW:, Sv: or Antw: after the list's tag) of the
archive, oldest first; every 60th of them; kept when its stored text has between 3 and 150
lines (a person labels each line); deduplicated by Message-ID. The archive is
github.com/linux-mailinglist-archives/usrp-users.lists.ettus.com.0 (one message per commit, in
a file named `m`); its path is the first argument.

    python -m tests.replies.heldout.sample_usrp /path/to/usrp-users.git
"""

from __future__ import annotations

import email
import re
import subprocess
import sys
from pathlib import Path

from core.inbound import parse

HERE = Path(__file__).parent / "usrp"
REPLY = re.compile(r"^(\[USRP-users\]\s*)?(Re|RE|AW|Sv|Antw):", re.IGNORECASE)
EVERY = 60


def main(repo: str) -> None:
    log = subprocess.run(
        ["git", "-C", repo, "log", "--reverse", "--format=%H%x09%s"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    replies = [line.split("\t", 1)[0] for line in log if REPLY.match(line.partition("\t")[2])]
    seen: set[str] = set()
    HERE.mkdir(exist_ok=True)
    for commit in replies[::EVERY]:
        raw = subprocess.run(
            ["git", "-C", repo, "show", f"{commit}:m"], check=True, capture_output=True
        ).stdout
        message_id = str(email.message_from_bytes(raw).get("Message-ID", commit)).strip()
        lines = parse(raw).text.splitlines()
        if message_id in seen or not 3 <= len(lines) <= 150:
            continue
        seen.add(message_id)
        (HERE / f"usrp_{commit[:12]}.eml").write_bytes(raw)


if __name__ == "__main__":
    main(sys.argv[1])
