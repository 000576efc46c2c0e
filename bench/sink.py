"""A counting SMTP sink in a process of its own, so benchmarks do not share a GIL with it.

    python bench/sink.py PORT COUNT_FILE

It accepts every message and writes "count last_epoch" to COUNT_FILE after each one (cheap:
one small write), so the benchmark reads progress without talking SMTP to it.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller


class CountingHandler:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        self.count += 1
        self.path.write_text(f"{self.count} {time.time()}")
        return "250 2.0.0 Ok"


def main() -> None:
    port, path = int(sys.argv[1]), Path(sys.argv[2])
    path.write_text("0 0")
    controller = Controller(CountingHandler(path), hostname="127.0.0.1", port=port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
