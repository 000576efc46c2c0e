"""Child processes kept running: a crashed one comes back with backoff, and all stop together.

Used by `recruitmail dev` (the whole stack) and by `recruitmail worker --processes N` (N worker
processes under one parent).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# A crashed child comes back after 1, 2, 4 … seconds, at most 30; a child that stayed up a
# minute starts again from 1 s.
RESTART_BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0
_PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    name: str
    args: list[str]
    to_log: bool
    proc: subprocess.Popen[bytes]
    env: dict[str, str] | None = None
    started: float = field(default_factory=time.monotonic)
    restarts: int = 0
    backoff: float = 1.0
    restart_at: float | None = None


class Children:
    def __init__(self, logs: Path, *, die_with_parent: bool = False) -> None:
        self.children: list[Child] = []
        self.logs = logs
        self.die_with_parent = die_with_parent

    def _popen(
        self, name: str, args: list[str], to_log: bool, env: dict[str, str] | None
    ) -> subprocess.Popen[bytes]:
        out = None
        if to_log:
            self.logs.mkdir(parents=True, exist_ok=True)
            out = (self.logs / f"{name}.log").open("ab")
        # A session of its own: Ctrl-C reaches only us, and we stop children in order.
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
            env={**os.environ, **env} if env else None,
            preexec_fn=_die_with_parent if self.die_with_parent else None,
        )

    def spawn(
        self,
        name: str,
        args: list[str],
        *,
        to_log: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        proc = self._popen(name, args, to_log, env)
        self.children.append(Child(name, args, to_log, proc, env))
        return proc

    def gave_up(self, child: Child) -> None:
        """Called before a crashed child is restarted; raise RuntimeError to stop instead."""

    def watch(self) -> None:
        """Until KeyboardInterrupt: restart whatever crashed, with backoff; the rest stays up."""
        while True:
            now = time.monotonic()
            for child in self.children:
                if child.proc.poll() is None:
                    if now - child.started > STABLE_AFTER:
                        child.backoff = 1.0
                    continue
                if child.restart_at is None:
                    self.gave_up(child)
                    child.restart_at = now + child.backoff
                    print(
                        f"{child.name} exited (code {child.proc.returncode}); restarting in "
                        f"{child.backoff:.0f} s",
                        flush=True,
                    )
                elif now >= child.restart_at:
                    child.proc = self._popen(child.name, child.args, child.to_log, child.env)
                    child.started, child.restart_at = now, None
                    child.restarts += 1
                    child.backoff = min(child.backoff * 2, RESTART_BACKOFF_MAX)
                    print(f"{child.name} restarted (restart {child.restarts})", flush=True)
            time.sleep(0.2)

    def stop(self, timeout: float = 15.0, stop_signal: dict[str, int] | None = None) -> None:
        """Signal every child (SIGTERM unless `stop_signal` names another), last started first,
        then wait `timeout` seconds for each before killing it."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                print(f"stopping {child.name} …", flush=True)
                child.proc.send_signal((stop_signal or {}).get(child.name, signal.SIGTERM))
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"{child.name} did not stop in {timeout:.0f} s; killing it", flush=True)
                child.proc.kill()
                child.proc.wait()


def interrupt_on_signals() -> None:
    """SIGTERM (a service manager, `kill`) and SIGINT (also in the background, where the shell
    ignores it) both stop the children in order."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _die_with_parent() -> None:
    """In the child, before exec: a parent killed with -9 takes its children with it (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
