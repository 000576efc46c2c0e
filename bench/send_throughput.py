"""Send N messages through API → SendMessage workflow → SMTP sink, against two baselines.

    python bench/send_throughput.py [-n 500] [--concurrency 8]

It starts its own Temporal dev server, the API, one worker and the dev outbox (the sink) as
separate processes, like `recruitmail dev`, on free ports and a throwaway SQLite database.
Baselines, on the same machine in the same run:
  1. the same N messages sent directly with aiosmtplib (a fresh connection each, like a send);
  2. a bare one-workflow-one-activity loop on the same Temporal server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from email.parser import BytesHeaderParser
from pathlib import Path

import aiosmtplib
import httpx
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from bare_loop import BareLoop, bare_noop
from common import (
    CpuMeter,
    Figure,
    bench_company,
    cpu_figures,
    free_port,
    percentile,
    pid_with,
    report,
    run_bench,
    spawn,
    stack_env,
    start_temporal,
    wait_http,
    wait_port,
)

from core.mail import compose, new_message_id
from core.models import utcnow


async def bounded(concurrency: int, jobs):
    semaphore = asyncio.Semaphore(concurrency)

    async def run(job):
        async with semaphore:
            return await job()

    return await asyncio.gather(*(run(j) for j in jobs))


class OutboxWatcher:
    """Watches the sink's directory and wakes the sender waiting for each Message-ID."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.seen: set[str] = set()

    def expect(self, message_id: str) -> asyncio.Future[float]:
        return self.waiting.setdefault(message_id, asyncio.get_running_loop().create_future())

    async def run(self) -> None:
        while True:
            for path in self.directory.glob("*/*.json"):  # one folder per company
                if path.name in self.seen:
                    continue
                self.seen.add(path.name)
                record = json.loads(path.read_text())
                headers = BytesHeaderParser().parsebytes(record["raw"].encode())
                future = self.expect(" ".join(headers["Message-ID"].split()))
                if not future.done():
                    future.set_result(record["received_at"])
            await asyncio.sleep(0.01)


async def pipeline(
    api: str, token: str, outbox: Path, n: int, concurrency: int, *, burst: bool = False
) -> dict:
    """A closed loop: `concurrency` senders, each waiting for delivery before its next send;
    or, with `burst`, every send posted as fast as the API takes them, then all awaited."""
    headers = {"Authorization": f"Bearer {token}"}
    watcher = OutboxWatcher(outbox)
    watch = asyncio.create_task(watcher.run())
    latencies: list[float] = []
    accepted_at: list[float] = []
    pending: list[tuple[float, asyncio.Future[float]]] = []
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=60) as http:
        candidate = (
            await http.post("/v1/candidates", json={"name": "Bench", "email": "b@example.com"})
        ).json()

        def send_one(i: int):
            async def job():
                response = await http.post(
                    f"/v1/candidates/{candidate['id']}/messages",
                    json={"subject": f"Bench {i}", "text": "Hello from the benchmark."},
                )
                response.raise_for_status()
                accepted = time.time()
                accepted_at.append(accepted)
                arrival = watcher.expect(response.json()["message_id_header"])
                if burst:
                    pending.append((accepted, arrival))
                    return
                delivered_at = await asyncio.wait_for(arrival, timeout=120)
                latencies.append(delivered_at - accepted)

            return job

        start, wall = time.perf_counter(), time.time()
        await bounded(concurrency, [send_one(i) for i in range(n)])
        for accepted, arrival in pending:
            latencies.append(await asyncio.wait_for(arrival, timeout=300) - accepted)
        elapsed = time.perf_counter() - start
    watch.cancel()
    accepting = (max(accepted_at) - wall) if accepted_at else float("nan")
    return {
        "delivered": len(latencies),
        "elapsed": elapsed,
        "latencies": latencies,
        "accept_rate": len(accepted_at) / accepting,
    }


async def direct_smtp(port: int, n: int, concurrency: int) -> float:
    async def job():
        _, composed = compose(
            from_address="acme-jobs@bench.example",
            from_name="Acme",
            to_address="b@example.com",
            to_name="Bench",
            subject="Direct",
            text="Hello from the baseline.",
            html=None,
            message_id=new_message_id("bench.example"),
            date=utcnow(),
        )
        await aiosmtplib.send(
            composed.mime,
            sender=composed.envelope_from,
            recipients=composed.envelope_to,
            hostname="127.0.0.1",
            port=port,
            start_tls=False,
            use_tls=False,
        )

    start = time.perf_counter()
    await bounded(concurrency, [job] * n)
    return n / (time.perf_counter() - start)


async def bare_workflows(
    client, n: int, concurrency: int, temporal_pid: int
) -> tuple[float, list[float], CpuMeter]:
    """The bare loop's rate, latencies, and CPU (this process, which is its client and its
    worker, and the Temporal server)."""
    queue = f"bare-{uuid.uuid4().hex[:8]}"
    latencies: list[float] = []

    async def one(i: int):
        async def job():
            t0 = time.perf_counter()
            await client.execute_workflow(BareLoop.run, i, id=f"bare-{queue}-{i}", task_queue=queue)
            latencies.append(time.perf_counter() - t0)

        return job

    async with Worker(client, task_queue=queue, workflows=[BareLoop], activities=[bare_noop]):
        await bounded(concurrency, [await one(-i - 1) for i in range(concurrency)])  # warm
        latencies.clear()
        with CpuMeter({"bare": os.getpid(), "temporal": temporal_pid}, alone=("bare",)) as meter:
            start = time.perf_counter()
            await bounded(concurrency, [await one(i) for i in range(n)])
            elapsed = time.perf_counter() - start
    return n / elapsed, latencies, meter


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="messages in the burst (default 200)")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="the bare loop's concurrency (default 8)"
    )
    parser.add_argument(
        "--burst-concurrency", type=int, default=64, help="API calls at once in the burst"
    )
    parser.add_argument("--latency-n", type=int, default=100, help="sends for the latency")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temp dir")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (`worker --processes N`)"
    )
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="recruitmail-bench-"))
    print(f"state in {state}; starting Temporal …", flush=True)
    t0 = time.perf_counter()
    env = await start_temporal(state)
    print(f"Temporal ready in {time.perf_counter() - t0:.1f} s", flush=True)
    api_port, outbox_port = free_port(), free_port()
    db_url = args.database_url or f"sqlite:///{state / 'bench.db'}"
    settings_env = stack_env(
        state,
        db_url,
        env.client.service_client.config.target_host,
        api_port=api_port,
        dev_outbox_port=outbox_port,
    )
    token = bench_company(db_url)

    procs: list[subprocess.Popen] = []
    try:
        procs.append(spawn(["dev-outbox"], settings_env, state / "outbox.log"))
        procs.append(
            spawn(["worker", "--processes", str(args.workers)], settings_env, state / "worker.log")
        )
        procs.append(spawn(["api"], settings_env, state / "api.log"))
        wait_port(outbox_port)
        await wait_http(f"http://127.0.0.1:{api_port}/readyz")

        warm = await pipeline(
            f"http://127.0.0.1:{api_port}", token, state / "outbox", 5, args.concurrency
        )
        if warm["delivered"] != 5:
            raise SystemExit(f"warm-up delivered {warm['delivered']} of 5; see {state}/*.log")
        for path in (state / "outbox").glob("*/*.json"):
            path.unlink()
        api = f"http://127.0.0.1:{api_port}"
        temporal_pid = pid_with(str(state / "temporal.db"))
        print(f"burst: {args.n} sends as fast as the API takes them …", flush=True)
        with CpuMeter(
            {"api": procs[-1].pid, "worker": procs[1].pid, "temporal": temporal_pid}
        ) as cpu:
            burst = await pipeline(
                api, token, state / "outbox", args.n, args.burst_concurrency, burst=True
            )
        for path in (state / "outbox").glob("*/*.json"):
            path.unlink()
        print(f"closed loop: {args.latency_n} sends one at a time …", flush=True)
        closed = await pipeline(api, token, state / "outbox", args.latency_n, 1)
        for path in (state / "outbox").glob("*/*.json"):
            path.unlink()
        print("direct aiosmtplib baseline …", flush=True)
        direct_rate = await direct_smtp(outbox_port, args.n, args.concurrency)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)

    print("bare workflow loop baseline …", flush=True)
    bare_rate, bare_lat, bare_cpu = await bare_workflows(
        env.client, args.n, args.concurrency, temporal_pid
    )
    await env.shutdown()

    if burst["delivered"] != args.n:
        raise SystemExit(f"the burst delivered {burst['delivered']} of {args.n}; see {state}")
    rate = burst["delivered"] / burst["elapsed"]
    lat = closed["latencies"]
    report(
        f"single sends on {db_url.split(':')[0]}, {args.workers} worker(s): a burst of {args.n} "
        f"(API calls {args.burst_concurrency} at once), "
        f"{args.latency_n} one at a time; bare loop at concurrency {args.concurrency}",
        [
            Figure("burst through the API, until all sent", rate, "msg/s",
                   "bare loop", bare_rate, "ratio>=1.0"),
            Figure("the API's 202s during the burst", burst["accept_rate"], "msg/s"),
            Figure("direct aiosmtplib (the sink's ceiling)", direct_rate, "msg/s"),
            Figure("accepted → sent, p50", percentile(lat, 50) * 1000, "ms",
                   "bare loop p50", percentile(bare_lat, 50) * 1000, "value<100"),
            Figure("accepted → sent, p99", percentile(lat, 99) * 1000, "ms", target="value<500"),
            # Issue 37: our processes at most 1.5x the bare loop's own (or 25 ms), which makes
            # the whole send at most 1.1x the bare loop's CPU.
            *cpu_figures("send", cpu, args.n, ("api", "worker"), bare_cpu, args.n,
                         total_target="ratio<1.1", own_target="ratio<1.5"),
        ],
        save_as="send_throughput",
    )  # fmt: skip


if __name__ == "__main__":
    run_bench(main)
