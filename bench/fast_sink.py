"""A minimal asyncio SMTP sink, fast enough not to be the bottleneck (aiosmtpd tops out at
about 470-870 msg/s on a 2-core machine).

    python bench/fast_sink.py PORT COUNT_FILE

The same protocol as bench/sink.py: it accepts every message (EHLO, MAIL, RCPT, DATA with
PIPELINING, RSET, NOOP, QUIT) and keeps "count last_epoch" in COUNT_FILE, written at most every
20 ms and when idle, so the benchmark reads progress without talking SMTP to it.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path


class Counter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self.last = 0.0
        self.written = 0.0

    def add(self) -> None:
        self.count += 1
        self.last = time.time()
        if self.last - self.written > 0.02:
            self.flush()

    def flush(self) -> None:
        self.path.write_text(f"{self.count} {self.last}")
        self.written = time.time()


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, c: Counter) -> None:
    writer.write(b"220 fast-sink ESMTP\r\n")
    try:
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250-fast-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await reader.readuntil(b"\r\n.\r\n")
                c.add()
                writer.write(b"250 2.0.0 Ok: queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:  # MAIL, RCPT, RSET, NOOP
                writer.write(b"250 2.0.0 Ok\r\n")
            if not reader._buffer:
                await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main() -> None:
    port, path = int(sys.argv[1]), Path(sys.argv[2])
    counter = Counter(path)
    counter.flush()
    server = await asyncio.start_server(
        lambda r, w: session(r, w, counter), "127.0.0.1", port, limit=64 * 1024 * 1024
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def idle_flush() -> None:
        while True:
            await asyncio.sleep(0.05)
            if counter.written < counter.last:
                counter.flush()

    flusher = asyncio.ensure_future(idle_flush())
    async with server:
        await stop.wait()
    flusher.cancel()
    counter.flush()


if __name__ == "__main__":
    asyncio.run(main())
