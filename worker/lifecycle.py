"""Long-running processes stop within a bounded time on SIGINT or SIGTERM.

A worker whose Temporal server has gone away retries its calls; a graceful shutdown would wait
on them. So the first signal asks the process to stop, and a timer ends it after
`RECRUITMAIL_SHUTDOWN_GRACE_SECONDS` if it has not; a second signal ends it at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]], *, grace: float) -> None:
    """Run `main(stop)` until it returns; `stop` is set by SIGINT or SIGTERM."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if stop.is_set():
                log.warning("second %s: exiting now", signal.Signals(signum).name)
                os._exit(1)
            log.info("%s: stopping (at most %.0f s)", signal.Signals(signum).name, grace)
            stop.set()
            timer = threading.Timer(grace, _give_up, args=(grace,))
            timer.daemon = True
            timer.start()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        await main(stop)

    asyncio.run(runner())


def _give_up(grace: float) -> None:
    log.warning("did not stop within %.0f s (Temporal unreachable?); exiting anyway", grace)
    logging.shutdown()
    os._exit(1)


async def until_stopped(stop: asyncio.Event, work: Awaitable[object]) -> bool:
    """Await `work` unless `stop` is set first; True when the work finished."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task in done:
        task.result()
        return True
    task.cancel()
    return False
