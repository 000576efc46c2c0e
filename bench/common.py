"""Shared by the benchmarks: a Temporal dev server, child processes, percentiles."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.testing import WorkflowEnvironment

from core.settings import Settings
from core.temporal import SEARCH_ATTRIBUTES, data_converter
from worker.dev import SQLITE_PRAGMAS


def bench_company(db_url: str) -> str:
    """The benchmark's company (slug `bench`, so its hosted address is bench-jobs@…) in a
    migrated database; its admin's token."""
    from sqlmodel import Session

    from core.bootstrap import create_company
    from core.db import make_engine
    from core.migrate import upgrade

    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            return create_company(
                session, name="Bench", slug="bench", admin_email="admin@bench.example"
            ).token
    finally:
        engine.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


async def start_temporal(state: Path) -> WorkflowEnvironment:
    beside = Path(sys.executable).parent / "temporal"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(beside) if beside.exists() else shutil.which("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=data_converter(Settings(_env_file=None)),
        dev_server_startup_timeout=timedelta(seconds=180),
        dev_server_database_filename=str(state / "temporal.db"),
        dev_server_log_level="error",
        # The same SQLite settings as `recruitmail dev` (worker/dev.py).
        dev_server_extra_args=list(SQLITE_PRAGMAS),
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            await env.client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace="default"), timeout=timedelta(seconds=5)
            )
            return env
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *args],
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(url, timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready")
            await asyncio.sleep(0.3)


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} not open")
        time.sleep(0.2)


@dataclass(frozen=True)
class Figure:
    """One measured figure, its baseline from the same run, and its target: "ratio>=1.2" (the
    ratio to the baseline), "value>=1000", or "value<100"."""

    name: str
    value: float
    unit: str
    baseline: str = ""
    base: float = 0.0
    target: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.base if self.base else float("nan")

    @property
    def verdict(self) -> str:
        if not self.target:
            return ""
        kind, _, limit_text = self.target.partition(">=" if ">=" in self.target else "<")
        limit = float(limit_text)
        measured = self.ratio if kind == "ratio" else self.value
        met = measured >= limit if ">=" in self.target else measured < limit
        return "met" if met else "NOT met"


RESULTS = Path(__file__).parent / "results"


def report(
    title: str, figures: list[Figure], save_as: str = "", raw: dict[str, Any] | None = None
) -> None:
    """One table per benchmark: each figure beside its baseline, the ratio, target, verdict.
    With `save_as`, the figures and `raw` also go to bench/results/{save_as}.json, with the
    date, the machine, the commit and the command."""
    if save_as:
        save(save_as, title, figures, raw or {})
    print()
    print(title)
    print(
        f"{'figure':40} {'value':>9} {'unit':6} {'baseline':>22} {'ratio':>6} "
        f"{'target':>14}  verdict"
    )
    for f in figures:
        base = f"{f.baseline} {f.base:.1f}" if f.baseline else ""
        ratio = f"{f.ratio:.2f}" if f.baseline else ""
        print(
            f"{f.name:40} {f.value:9.1f} {f.unit:6} {base:>22} {ratio:>6} "
            f"{f.target:>14}  {f.verdict}"
        )


# -- CPU per message --------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    # Fields after the command name, which may itself hold spaces and parentheses.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (a `worker --processes N` parent and its children)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def cpu_seconds(pid: int, *, descendants: bool = True) -> float:
    """User and system CPU of a process (and its descendants), all threads, so far."""
    total = 0.0
    for member in process_tree(pid) if descendants else [pid]:
        try:
            fields = _stat(member)
        except OSError:
            continue  # ended meanwhile
        total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def pid_with(fragment: str) -> int:
    """The process whose command line holds `fragment` (the Temporal dev server, by its
    database file)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fragment in cmdline and int(entry.name) != os.getpid():
            return int(entry.name)
    raise RuntimeError(f"no process runs with {fragment!r}")


class CpuMeter:
    """CPU seconds per named process (with its descendants, except those named `alone`: the
    benchmark itself, whose children include the Temporal server) over a stretch of time."""

    def __init__(self, processes: dict[str, int], alone: tuple[str, ...] = ()) -> None:
        self.processes = processes
        self.alone = alone
        self.begun: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {
            name: cpu_seconds(pid, descendants=name not in self.alone)
            for name, pid in self.processes.items()
        }

    def __enter__(self) -> CpuMeter:
        self.begun = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        self.used = {name: value - self.begun[name] for name, value in self._now().items()}

    def per(self, count: int, *names: str) -> float:
        """Milliseconds of CPU per item, over the named processes (all when none named)."""
        chosen = names or tuple(self.used)
        return sum(self.used[n] for n in chosen) * 1000 / max(count, 1)


def cpu_figures(
    what: str,
    meter: CpuMeter,
    count: int,
    ours: tuple[str, ...],
    bare: CpuMeter,
    bare_count: int,
    *,
    total_target: str = "ratio<1.5",
    own_target: str | None = None,
) -> list[Figure]:
    """CPU per item summed over our processes and the Temporal server, beside the bare loop's
    per workflow (its client and worker in one process, and the same server), and the split.
    With `own_target`, also our processes' CPU alone beside the bare loop's own process."""
    total = meter.per(count, *ours, "temporal")
    bare_total = bare.per(bare_count)
    figures = [
        Figure(f"CPU per {what}, ours + Temporal", total, "ms",
               "bare loop", bare_total, total_target),
    ]  # fmt: skip
    if own_target is not None:
        figures.append(
            Figure(f"CPU per {what}, our processes", meter.per(count, *ours), "ms",
                   "bare loop's own process", bare.per(bare_count, "bare"), own_target)
        )  # fmt: skip
    for name in (*ours, "temporal"):
        figures.append(Figure(f"  of which {name}", meter.per(count, name), "ms"))
    figures.append(Figure("  bare loop: its process", bare.per(bare_count, "bare"), "ms"))
    figures.append(Figure("  bare loop: Temporal", bare.per(bare_count, "temporal"), "ms"))
    return figures


def run_bench(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a benchmark's `main`, then leave without the interpreter's teardown: the Temporal
    SDK's runtime threads can crash it (PyGILState_Release) after a long run, which would stop
    `make bench` although the figures are printed. A failure still exits non-zero."""
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)


def senders_dns(*domains: str) -> Any:
    """A real DNS server on loopback (tests/fakes/dns.py) publishing each sending domain's SPF
    (mail from 127.0.0.1 allowed) and DMARC records, as a resolver answers in production. Its
    `nameservers` go in RECRUITMAIL_DNS_NAMESERVERS. Without it, on an offline machine, every
    received message's SPF and DMARC lookups waited for the DNS timeout, and the benchmark
    measured that wait (routing at 0.2-0.3x the bare loop with the CPU idle)."""
    from tests.fakes.dns import DnsServer

    dns = DnsServer()
    for domain in domains:
        dns.txt(domain, "v=spf1 ip4:127.0.0.1 -all")
        dns.txt(f"_dmarc.{domain}", "v=DMARC1; p=none")
    return dns


def stack_env(state: Path, db_url: str, temporal: str, **settings: object) -> dict[str, str]:
    """The environment of the processes a benchmark spawns: its state folder, database and
    Temporal server, and `settings` as RECRUITMAIL_{NAME} variables (api_port=8001, …)."""
    env = {
        "RECRUITMAIL_STATE_DIR": str(state),
        "RECRUITMAIL_DATABASE_URL": db_url,
        "RECRUITMAIL_TEMPORAL_ADDRESS": temporal,
    }
    env.update({f"RECRUITMAIL_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def save(name: str, title: str, figures: list[Figure], raw: dict[str, Any]) -> None:
    """bench/results/{name}.json: the date, the machine, the commit, the command, the figures
    and the raw values behind them."""
    import json
    import platform
    from datetime import UTC, datetime

    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(
        json.dumps(
            {
                "title": title,
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "commit": commit,
                "command": " ".join(sys.argv),
                "figures": [
                    {
                        "name": f.name,
                        "value": f.value,
                        "unit": f.unit,
                        "baseline": f.baseline,
                        "base": f.base,
                        "ratio": f.ratio if f.base else None,
                        "target": f.target,
                        "verdict": f.verdict,
                    }
                    for f in figures
                ],
                "raw": raw,
            },
            indent=1,
        )
    )
