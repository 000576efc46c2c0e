"""Throughput with 1, 2 and 4 worker processes (`recruitmail worker --processes N`) on
PostgreSQL: a burst of single sends and a burst of inbound mail, per process count.

    python bench/scaling.py [--admin-url postgresql://postgres@127.0.0.1:5432/test]
                            [--processes 1 2 4] [--sends 200] [--inbound 300]

One Temporal dev server for the whole run; for each process count, a scratch database, the
API, the receiver, the dev outbox and `worker --processes N`. More processes than cores cannot
add throughput: the table prints the machine's core count beside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from common import (
    CpuMeter,
    Figure,
    bench_company,
    free_port,
    pid_with,
    report,
    run_bench,
    spawn,
    stack_env,
    start_temporal,
    wait_http,
    wait_port,
)
from inbound_throughput import DOMAIN, deliver_all, watch_api
from send_throughput import bare_workflows, pipeline


def scratch_database(admin_url: str, name: str, *, drop_only: bool = False) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


async def one_count(
    processes: int, state: Path, temporal: str, temporal_pid: int, db_url: str, args
) -> dict[str, float]:
    api_port, outbox_port, smtp_port = free_port(), free_port(), free_port()
    token = bench_company(db_url)
    settings_env = stack_env(
        state,
        db_url,
        temporal,
        task_queue=f"scaling-{processes}-{uuid.uuid4().hex[:6]}",
        api_port=api_port,
        dev_outbox_port=outbox_port,
        inbound_smtp_port=smtp_port,
        platform_mail_domain=DOMAIN,
    )
    logs = state / f"p{processes}"
    logs.mkdir(exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    api = f"http://127.0.0.1:{api_port}"
    outbox = state / "outbox"
    try:
        procs["outbox"] = spawn(["dev-outbox"], settings_env, logs / "outbox.log")
        procs["worker"] = spawn(
            ["worker", "--processes", str(processes)], settings_env, logs / "worker.log"
        )
        procs["api"] = spawn(["api"], settings_env, logs / "api.log")
        procs["receiver"] = spawn(["inbound-smtp"], settings_env, logs / "inbound.log")
        wait_port(outbox_port)
        wait_port(smtp_port)
        await wait_http(f"{api}/readyz")
        await asyncio.sleep(2 * processes)  # every child polling
        warm = await pipeline(api, token, outbox, 5 * processes, 4)
        if warm["delivered"] != 5 * processes:
            raise SystemExit(f"warm-up failed; see {logs}")
        ours = {"api": procs["api"].pid, "worker": procs["worker"].pid, "temporal": temporal_pid}
        with CpuMeter(ours) as send_cpu:
            burst = await pipeline(api, token, outbox, args.sends, 64, burst=True)
        async with httpx.AsyncClient(
            base_url=api, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            candidate = (
                await http.post(
                    "/v1/candidates", json={"name": "Bench", "email": "cand@example.com"}
                )
            ).json()
        watcher = asyncio.create_task(
            watch_api(api, token, candidate["id"], args.inbound, timeout=600)
        )
        ours = {
            "receiver": procs["receiver"].pid,
            "worker": procs["worker"].pid,
            "temporal": temporal_pid,
        }
        with CpuMeter(ours) as inbound_cpu:
            start = time.time()
            await deliver_all(
                smtp_port, f"bench-jobs@{DOMAIN}", "cand@example.com", args.inbound, 8
            )
            seen = await watcher
        routed = len(seen) / (max(seen.values(), default=start) - start)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=40)
    if burst["delivered"] != args.sends or len(seen) != args.inbound:
        raise SystemExit(f"{processes} processes lost messages; see {logs}")
    return {
        "sends": burst["delivered"] / burst["elapsed"],
        "send_cpu": send_cpu.per(args.sends),
        "routed": routed,
        "inbound_cpu": inbound_cpu.per(args.inbound),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--inbound", type=int, default=300)
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="recruitmail-scaling-bench-"))
    print(f"state in {state}; starting Temporal …", flush=True)
    env = await start_temporal(state)
    temporal = env.client.service_client.config.target_host
    temporal_pid = pid_with(str(state / "temporal.db"))
    results: dict[int, dict[str, float]] = {}
    try:
        for count in args.processes:
            name = f"recruitmail_scaling_{os.getpid()}_{count}"
            db_url = scratch_database(args.admin_url, name)
            print(f"{count} worker process(es) …", flush=True)
            try:
                results[count] = await one_count(count, state, temporal, temporal_pid, db_url, args)
            finally:
                scratch_database(args.admin_url, name, drop_only=True)
        print("bare workflow loop baseline …", flush=True)
        bare_rate, _, _ = await bare_workflows(env.client, 200, 8, temporal_pid)
    finally:
        await env.shutdown()

    first = results[args.processes[0]]
    figures = []
    for count, found in results.items():
        figures += [
            Figure(f"{count} process(es): sends, burst", found["sends"], "msg/s",
                   f"{args.processes[0]} process", first["sends"]),
            Figure(f"{count} process(es): inbound routed", found["routed"], "msg/s",
                   f"{args.processes[0]} process", first["routed"]),
            Figure(f"{count} process(es): CPU per send", found["send_cpu"], "ms"),
            Figure(f"{count} process(es): CPU per routed msg", found["inbound_cpu"], "ms"),
        ]  # fmt: skip
    figures.append(Figure("bare loop, one process", bare_rate, "wf/s"))
    report(
        f"worker processes on PostgreSQL, this machine: {os.cpu_count()} cores "
        f"({args.sends} sends, {args.inbound} inbound messages per count)",
        figures,
        save_as="scaling",
    )


if __name__ == "__main__":
    run_bench(main)
