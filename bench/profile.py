"""Where the CPU goes: py-spy flame graphs of the worker (and the API, and the receiver) during a
burst of sends, a burst of inbound mail and a bulk send, and a table of the split by kind of
work.

    python bench/profile.py [--sends 300] [--inbound 300] [--bulk 1000]

Writes bench/results/profile-{scenario}-{process}.svg (open in a browser; click to zoom) and
prints, per scenario and process, the share of samples by what the innermost recognised frame
belongs to: the workflow sandbox, the rest of the Temporal SDK, SQLAlchemy and SQLModel, the
database driver, email and MIME, SMTP, JSON and pydantic, logging, HTTP, asyncio, and our own
code. py-spy samples the processes from outside (as root, or with ptrace allowed).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from bulk_send import CountingSink, bulk, seed
from common import (
    bench_company,
    free_port,
    run_bench,
    senders_dns,
    spawn,
    stack_env,
    start_temporal,
    wait_http,
    wait_port,
)
from inbound_throughput import DOMAIN, deliver_all, watch_api
from send_throughput import pipeline

from core.migrate import upgrade

RESULTS = Path(__file__).parent / "results"
# The innermost frame whose file matches decides the kind of work, in this order of test.
KINDS = [
    ("workflow sandbox", ("workflow_sandbox",)),
    ("Temporal SDK", ("temporalio/",)),
    ("database driver", ("psycopg", "sqlite3", "_sqlite")),
    ("SQLAlchemy/SQLModel", ("sqlalchemy/", "sqlmodel/")),
    ("email and MIME", ("/email/", "core/mail.py", "core/inbound/")),
    ("SMTP", ("aiosmtplib/", "aiosmtpd/", "smtplib")),
    ("JSON and pydantic", ("json/", "pydantic", "orjson")),
    ("logging", ("logging/", "core/logs.py")),
    ("HTTP (API, clients)", ("uvicorn/", "starlette/", "fastapi/", "httpx/", "httpcore/", "h11/")),
    ("crypto", ("cryptography/", "hashlib", "ssl.py")),
    ("our code", ("(activities/", "(workflows/", "(api/", "(core/", "(worker/", "(contracts/")),
    ("asyncio and threads", ("asyncio/", "threading.py", "concurrent/", "selectors.py")),
]


# Samples whose innermost frame waits (py-spy counts a thread blocked in C as active): a pool
# thread waiting for work, the event loop waiting in epoll.
IDLE = ("_worker (concurrent/futures/thread.py:81)", "select (selectors.py", "wait (threading.py")


def kind_of(stack: str) -> str:
    frames = stack.split(";")
    if any(mark in frames[-1] for mark in IDLE):
        return "idle"
    for frame in reversed(frames):
        for kind, marks in KINDS:
            if any(mark in frame for mark in marks):
                return kind
    return "other"


def split(raw: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if number.isdigit() and (kind := kind_of(stack)) != "idle":
            counts[kind] += int(number)
    return counts


class Recorder:
    """py-spy on named processes: a flame graph and raw stacks each, until stopped."""

    def __init__(self, scenario: str, pids: dict[str, int], seconds: int) -> None:
        self.procs: list[subprocess.Popen] = []
        self.raw: dict[str, Path] = {}
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        for name, pid in pids.items():
            base = RESULTS / f"profile-{scenario}-{name}"
            self.raw[name] = base.with_suffix(".txt")
            for fmt, out in (("flamegraph", base.with_suffix(".svg")), ("raw", self.raw[name])):
                self.procs.append(
                    subprocess.Popen(
                        [spy, "record", "--pid", str(pid), "--subprocesses", "--rate", "100",
                         "--duration", str(seconds), "--format", fmt, "--output", str(out),
                         "--nonblocking"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )
                )  # fmt: skip

    def stop(self) -> dict[str, Counter[str]]:
        for proc in self.procs:
            proc.send_signal(2)  # py-spy writes its output on SIGINT
        for proc in self.procs:
            proc.wait(timeout=60)
        return {name: split(raw) for name, raw in self.raw.items() if raw.exists()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=300)
    parser.add_argument("--inbound", type=int, default=300)
    parser.add_argument("--bulk", type=int, default=1000)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)

    state = Path(tempfile.mkdtemp(prefix="recruitmail-profile-"))
    print(f"state in {state}; starting Temporal …", flush=True)
    env = await start_temporal(state)
    api_port, outbox_port, smtp_port = free_port(), free_port(), free_port()
    db_url = f"sqlite:///{state / 'bench.db'}"
    upgrade(db_url)
    sink_port = free_port()
    sink = CountingSink(sink_port, state, "fast_sink.py")
    settings_env = stack_env(
        state,
        db_url,
        env.client.service_client.config.target_host,
        api_port=api_port,
        dev_outbox_port=outbox_port,
        inbound_smtp_port=smtp_port,
        platform_mail_domain=DOMAIN,
    )
    procs: dict[str, subprocess.Popen] = {}
    results: dict[str, dict[str, Counter[str]]] = {}
    try:
        with senders_dns("example.com", "example.org") as dns:
            settings_env["RECRUITMAIL_DNS_NAMESERVERS"] = dns.nameservers
            await profile_all(args, state, env, settings_env, sink, sink_port, procs, results)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        sink.stop()
        await env.shutdown()
    print_split(results)


async def profile_all(args, state, env, settings_env, sink, sink_port, procs, results) -> None:
    api = f"http://127.0.0.1:{settings_env['RECRUITMAIL_API_PORT']}"
    smtp_port = int(settings_env["RECRUITMAIL_INBOUND_SMTP_PORT"])
    outbox_port = int(settings_env["RECRUITMAIL_DEV_OUTBOX_PORT"])
    db_url = settings_env["RECRUITMAIL_DATABASE_URL"]
    try:
        procs["outbox"] = spawn(["dev-outbox"], settings_env, state / "outbox.log")
        procs["worker"] = spawn(["worker"], settings_env, state / "worker.log")
        procs["api"] = spawn(["api"], settings_env, state / "api.log")
        procs["receiver"] = spawn(["inbound-smtp"], settings_env, state / "inbound.log")
        wait_port(outbox_port)
        wait_port(smtp_port)
        await wait_http(f"{api}/readyz")
        token = bench_company(db_url)
        await pipeline(api, token, state / "outbox", 10, 4)  # warm-up

        print(f"profiling a burst of {args.sends} sends …", flush=True)
        spy = Recorder("sends", {"worker": procs["worker"].pid, "api": procs["api"].pid}, 120)
        await pipeline(api, token, state / "outbox", args.sends, 64, burst=True)
        results["sends"] = spy.stop()

        async with httpx.AsyncClient(
            base_url=api, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            candidate = (
                await http.post("/v1/candidates", json={"name": "B", "email": "c@example.com"})
            ).json()
        print(f"profiling {args.inbound} inbound messages …", flush=True)
        watcher = asyncio.create_task(
            watch_api(api, token, candidate["id"], args.inbound, timeout=300)
        )
        spy = Recorder(
            "inbound", {"worker": procs["worker"].pid, "receiver": procs["receiver"].pid}, 120
        )
        await deliver_all(smtp_port, f"bench-jobs@{DOMAIN}", "c@example.com", args.inbound, 8)
        await watcher
        results["inbound"] = spy.stop()
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=15)

    # The bulk send goes through the platform relay (SMTP) to a fast sink.
    bulk_env = {
        **settings_env,
        "RECRUITMAIL_PLATFORM_TRANSPORT": "smtp",
        "RECRUITMAIL_SMTP_RELAY_URL": f"smtp://127.0.0.1:{sink_port}",
    }
    procs.clear()
    try:
        procs["worker"] = spawn(["worker"], bulk_env, state / "worker-bulk.log")
        procs["api"] = spawn(["api"], bulk_env, state / "api-bulk.log")
        await wait_http(f"{api}/readyz")
        token, ids = seed(db_url, 20)
        await bulk(api, token, ids, sink)
        sink.reset()
        token, ids = seed(db_url, args.bulk)
        print(f"profiling a bulk send of {args.bulk} …", flush=True)
        spy = Recorder("bulk", {"worker": procs["worker"].pid}, 120)
        await bulk(api, token, ids, sink)
        results["bulk"] = spy.stop()
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=15)


def print_split(results: dict[str, dict[str, Counter[str]]]) -> None:
    kinds = [kind for kind, _ in KINDS] + ["other"]
    print()
    print("Where the CPU goes: share of py-spy samples by kind of work (innermost frame that")
    print("belongs to one; waiting threads left out)")
    columns = [(scenario, name) for scenario, found in results.items() for name in found]
    print(f"{'':22}" + "".join(f"{s + ' ' + n:>18}" for s, n in columns))
    for kind in kinds:
        row = []
        for scenario, name in columns:
            counts = results[scenario][name]
            total = sum(counts.values()) or 1
            row.append(f"{counts[kind] * 100 / total:17.0f}%")
        print(f"{kind:22}" + "".join(row))
    print(f"flame graphs: {RESULTS}/profile-*.svg")


if __name__ == "__main__":
    run_bench(main)
