"""`recruitmail worker --processes N`: N worker processes under one parent.

Each child is a whole worker (`recruitmail worker --processes 1`): it polls the same task
queues, runs its own event relay and sweepers (they coordinate through the database), and uses
one core at most (Python's interpreter lock). The parent restarts a child that crashes (after 1,
2, 4 … s, at most 30), stops them all on SIGTERM or SIGINT within the shutdown grace, and takes
them with it if it is killed. With `RECRUITMAIL_WORKER_METRICS_PORT` set, child k serves its
metrics on that port + k.
"""

from __future__ import annotations

import sys

from core.settings import Settings
from worker.supervise import Children, interrupt_on_signals


def run_processes(settings: Settings, count: int) -> int:
    interrupt_on_signals()
    children = Children(settings.state_dir / "logs", die_with_parent=True)
    for k in range(count):
        env = {"RECRUITMAIL_WORKER_PROCESSES": "1"}
        if settings.worker_metrics_port:
            env["RECRUITMAIL_WORKER_METRICS_PORT"] = str(settings.worker_metrics_port + k)
        children.spawn(
            f"worker-{k}",
            [sys.executable, "-m", "worker.cli", "worker", "--processes", "1"],
            env=env,
        )
    print(f"{count} worker processes started", flush=True)
    try:
        children.watch()
    except KeyboardInterrupt:
        pass
    finally:
        children.stop(timeout=settings.shutdown_grace_seconds + 5)
    return 0
