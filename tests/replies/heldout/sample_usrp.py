"""How the usrp-users held-out messages were chosen (README.md), fixed before any was read:
every reply (a subject starting Re:, RE:, AW:, Sv: or Antw: after the list's [USRP-users]
tag) of the archive, oldest first; every 60th of them; kept when its stored text has between
3 and 150 lines; deduplicated by Message-ID (sample_list.py, with the list's own tag). The
archive is github.com/linux-mailinglist-archives/usrp-users.lists.ettus.com.0.

    python -m tests.replies.heldout.sample_usrp /path/to/usrp-users.git
"""

from __future__ import annotations

import sys

from tests.replies.heldout import sample_list

if __name__ == "__main__":
    sample_list.main(sys.argv[1], "usrp", 60, tag=r"\[USRP-users\]")
