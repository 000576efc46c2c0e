"""Deliver N real messages over SMTP to the inbound receiver; time them until the API shows them.

    python bench/inbound_throughput.py [-n 300] [--concurrency 8] [--database-url URL] [--workers N]

It starts its own Temporal dev server, the API, the worker and the inbound SMTP receiver as
separate processes, like `recruitmail dev`, on free ports and a throwaway SQLite database; the
SMTP clients run in a process of their own.
Half the messages come from a candidate's address (routed by sender), half from unknown
addresses (Unassigned messages). Latency runs from the receiver's 250 to the message being
listed by the API, which the benchmark polls every 50 ms.

The senders' domains publish SPF and DMARC on a DNS server on loopback (as a resolver answers
in production), so routing does not wait for DNS timeouts. The accept rate's baseline, in the
same run: a bare aiosmtpd server in a process of its own
that writes each message to a file and fsyncs it before its 250 (in a thread, as our receiver
stores in one), fed by the same clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiosmtplib
import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

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
    senders_dns,
    spawn,
    stack_env,
    start_temporal,
    wait_http,
    wait_port,
)
from send_throughput import bare_workflows

DOMAIN = "jobs.bench.example"


def mail(i: int, sender: str, to: str) -> tuple[str, bytes]:
    message_id = f"<bench-{i}-{uuid.uuid4().hex}@example.org>"
    raw = (
        f"From: Bench Sender <{sender}>\r\nTo: {to}\r\nSubject: Bench {i}\r\n"
        f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\nHello, reply number {i}.\r\n"
    ).encode()
    return message_id, raw


async def deliver_all(port: int, to: str, candidate_email: str, n: int, concurrency: int):
    """`concurrency` SMTP sessions, each delivering its share over one reused connection, from
    a process of their own: in this one the API watcher's parsing of ever longer lists would
    slow the clients and the accept figure with them. Returns {Message-ID: epoch of its 250},
    and the seconds the whole delivery took."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--deliver", str(port), to, candidate_email, str(n),
        str(concurrency), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await child.communicate()
    if child.returncode:
        raise SystemExit(f"the SMTP clients failed (exit {child.returncode})")
    result = json.loads(out)
    return result["accepted"], result["elapsed"]


async def _deliver_here(port: int, to: str, candidate_email: str, n: int, concurrency: int):
    accepted: dict[str, float] = {}

    async def session(worker: int) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60, start_tls=False)
        async with smtp:
            for i in range(worker, n, concurrency):
                sender = candidate_email if i % 2 == 0 else f"stranger{i}@example.org"
                message_id, raw = mail(i, sender, to)
                await smtp.sendmail(sender, [to], raw)
                accepted[message_id] = time.time()

    start = time.time()
    await asyncio.gather(*(session(w) for w in range(concurrency)))
    print(json.dumps({"accepted": accepted, "elapsed": time.time() - start}))


def bare_server(port: int, directory: str) -> None:
    """The accept baseline: aiosmtpd, each message written to its own file and fsynced (in a
    thread, so the sessions overlap) before the 250; until SIGTERM."""
    import os
    import signal

    from aiosmtpd.controller import Controller

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)

    def keep(content: bytes) -> None:
        path = folder / f"{uuid.uuid4().hex}.eml"
        with path.open("wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())

    class Keep:
        async def handle_DATA(self, server, session, envelope) -> str:
            await asyncio.to_thread(keep, envelope.original_content or envelope.content)
            return "250 OK"

    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        controller.stop()


async def bare_accept_rate(state: Path, n: int, concurrency: int) -> float:
    """The same clients against the bare server: messages accepted per second."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--bare-server", str(port), str(state / "bare-inbox")]
    )
    try:
        wait_port(port)
        _, elapsed = await deliver_all(port, f"bench-jobs@{DOMAIN}", "cand@example.com", n,
                                       concurrency)  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=15)
    return n / elapsed


async def watch_api(api: str, token: str, candidate_id: str, n: int, timeout: float) -> dict:
    """Poll the two lists until all n messages are visible; first-seen time per Message-ID."""
    seen: dict[str, float] = {}
    deadline = time.time() + timeout
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as http:
        while len(seen) < n and time.time() < deadline:
            for path in (
                f"/v1/candidates/{candidate_id}/messages",
                "/v1/messages/unassigned?limit=500",
            ):
                now = time.time()
                for message in (await http.get(path)).json():
                    seen.setdefault(message["message_id_header"], now)
            await asyncio.sleep(0.05)
    return seen


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="messages (default 300, at most 500)")
    parser.add_argument("--concurrency", type=int, default=8, help="SMTP sessions (default 8)")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temp dir")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (`worker --processes N`)"
    )
    args = parser.parse_args()
    n = min(args.n, 500)  # the unassigned list is read in one page

    state = Path(tempfile.mkdtemp(prefix="recruitmail-inbound-bench-"))
    print(f"state in {state}; starting Temporal …", flush=True)
    with senders_dns("example.com", "example.org") as dns:
        await measure(args, n, state, dns.nameservers)


async def measure(args: argparse.Namespace, n: int, state: Path, nameservers: str) -> None:
    env = await start_temporal(state)
    api_port, smtp_port = free_port(), free_port()
    db_url = args.database_url or f"sqlite:///{state / 'bench.db'}"
    settings_env = stack_env(
        state,
        db_url,
        env.client.service_client.config.target_host,
        api_port=api_port,
        inbound_smtp_port=smtp_port,
        platform_mail_domain=DOMAIN,
        dns_nameservers=nameservers,
    )
    token = bench_company(db_url)
    api = f"http://127.0.0.1:{api_port}"
    to = f"bench-jobs@{DOMAIN}"

    procs: list[subprocess.Popen] = []
    try:
        procs.append(
            spawn(["worker", "--processes", str(args.workers)], settings_env, state / "worker.log")
        )
        procs.append(spawn(["api"], settings_env, state / "api.log"))
        procs.append(spawn(["inbound-smtp"], settings_env, state / "inbound.log"))
        await wait_http(f"{api}/readyz")
        wait_port(smtp_port)
        async with httpx.AsyncClient(
            base_url=api, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            candidate = (
                await http.post(
                    "/v1/candidates", json={"name": "Bench", "email": "cand@example.com"}
                )
            ).json()
        print(f"delivering {n} over {args.concurrency} SMTP sessions …", flush=True)
        temporal_pid = pid_with(str(state / "temporal.db"))
        watcher = asyncio.create_task(watch_api(api, token, candidate["id"], n, timeout=600))
        # The API only answers the benchmark's polling here: its CPU is not the messages'.
        with CpuMeter(
            {"receiver": procs[2].pid, "worker": procs[0].pid, "temporal": temporal_pid}
        ) as cpu:
            start = time.time()
            accepted, smtp_elapsed = await deliver_all(
                smtp_port, to, "cand@example.com", n, args.concurrency
            )
            seen = await watcher
        total = max(seen.values(), default=start) - start
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
    print("bare workflow loop baseline …", flush=True)
    bare_rate, _, bare_cpu = await bare_workflows(env.client, 200, 8, temporal_pid)
    await env.shutdown()
    print("bare aiosmtpd + fsync baseline …", flush=True)
    bare_accept = await bare_accept_rate(state, n, args.concurrency)

    latencies = [seen[m] - t for m, t in accepted.items() if m in seen]
    report(
        f"inbound on {db_url.split(':')[0]}, {args.workers} worker process(es): {n} messages "
        f"over {args.concurrency} SMTP sessions; bare loop at concurrency 8",
        [
            Figure("SMTP accepted (stored, 250)", n / smtp_elapsed, "msg/s",
                   "bare aiosmtpd + fsync", bare_accept, "ratio>=0.6"),
            Figure("routed and visible in the API", len(latencies) / total, "msg/s",
                   "bare loop", bare_rate, "ratio>=1.2"),
            Figure("250 → visible, p50", percentile(latencies, 50) * 1000, "ms",
                   target="value<2000"),
            *cpu_figures("routed message", cpu, n, ("receiver", "worker"), bare_cpu, 200),
        ],
        save_as="inbound_throughput",
    )  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bare-server"]:
        bare_server(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1:2] == ["--deliver"]:
        port, to, email, count, sessions = sys.argv[2:7]
        asyncio.run(_deliver_here(int(port), to, email, int(count), int(sessions)))
    else:
        run_bench(main)
