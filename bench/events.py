"""Events: sends with and without a subscribed webhook endpoint, and deliveries per second.

    python bench/events.py [-n 200]

It starts its own Temporal dev server, the API, one worker, the dev outbox and a webhook
receiver (bench/hook_sink.py) as separate processes on a throwaway SQLite database. In one run:
  1. a burst of N sends with no endpoint (twice, before and after the next, for the baseline);
  2. the same burst with one endpoint subscribed to message.sent: the sends' rate (target: at
     most 10 % below the baseline), and the webhook deliveries per second to the receiver.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from common import (
    Figure,
    bench_company,
    free_port,
    report,
    run_bench,
    spawn,
    stack_env,
    start_temporal,
    wait_http,
    wait_port,
)
from send_throughput import pipeline

from core.db import make_engine


async def hook_state(port: int, path: str = "/count") -> dict:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"http://127.0.0.1:{port}{path}")).json()


async def backlog_rate(http: httpx.AsyncClient, *, engine_url: str, hook_port: int) -> float:
    from sqlalchemy import func, update
    from sqlmodel import select

    from core.models import Event, WebhookEndpoint

    engine = make_engine(engine_url)
    with Session(engine) as session:
        total = session.exec(
            select(func.count()).select_from(Event).where(Event.type == "message.sent")
        ).one()
    created = await http.post(
        "/v1/webhook-endpoints",
        json={"url": f"http://127.0.0.1:{hook_port}/backlog", "event_types": ["message.sent"]},
    )
    created.raise_for_status()
    with Session(engine) as session:
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(created.json()["id"]))  # type: ignore[arg-type]
            .values(cursor=0)
        )
        session.commit()
    engine.dispose()
    await hook_state(hook_port, "/reset")
    await http.post(f"/v1/webhook-endpoints/{created.json()['id']}/test")  # wakes its run
    deadline = time.monotonic() + 300
    while (seen := await hook_state(hook_port))["count"] < total:
        if time.monotonic() > deadline:
            raise SystemExit(f"backlog: {seen['count']} of {total} delivered")
        await asyncio.sleep(0.2)
    return seen["count"] / max(seen["last"] - seen["first"], 1e-6)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="messages per burst (default 200)")
    parser.add_argument("--burst-concurrency", type=int, default=64)
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="recruitmail-bench-events-"))
    print(f"state in {state}; starting Temporal …", flush=True)
    env = await start_temporal(state)
    api_port, outbox_port, hook_port = free_port(), free_port(), free_port()
    db_url = f"sqlite:///{state / 'bench.db'}"
    settings_env = stack_env(
        state,
        db_url,
        env.client.service_client.config.target_host,
        api_port=api_port,
        dev_outbox_port=outbox_port,
        allow_private_hosts="true",  # the receiver is on loopback
    )
    token = bench_company(db_url)
    api = f"http://127.0.0.1:{api_port}"
    outbox = state / "outbox"

    def clear() -> None:
        for path in outbox.glob("*/*.json"):
            path.unlink()

    procs: list[subprocess.Popen] = []
    try:
        procs.append(spawn(["dev-outbox"], settings_env, state / "outbox.log"))
        procs.append(spawn(["worker"], settings_env, state / "worker.log"))
        procs.append(spawn(["api"], settings_env, state / "api.log"))
        procs.append(
            subprocess.Popen(
                [sys.executable, str(Path(__file__).parent / "hook_sink.py"), str(hook_port)]
            )
        )
        wait_port(outbox_port)
        wait_port(hook_port)
        await wait_http(f"{api}/readyz")
        await pipeline(api, token, outbox, 5, 4)  # warm-up
        clear()

        async def burst() -> float:
            result = await pipeline(api, token, outbox, args.n, args.burst_concurrency, burst=True)
            clear()
            return result["delivered"] / result["elapsed"]

        print(f"burst of {args.n} sends, no endpoint …", flush=True)
        without = [await burst()]
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=api, headers=headers) as http:
            created = await http.post(
                "/v1/webhook-endpoints",
                json={
                    "url": f"http://127.0.0.1:{hook_port}/hooks",
                    "event_types": ["message.sent"],
                },
            )
            created.raise_for_status()
            endpoint = created.json()["id"]
            await hook_state(hook_port, "/reset")
            print(f"burst of {args.n} sends, one endpoint subscribed …", flush=True)
            with_hook = await burst()
            deadline = time.monotonic() + 300
            while (seen := await hook_state(hook_port))["count"] < args.n:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{seen['count']} of {args.n} events delivered; see {state}")
                await asyncio.sleep(0.2)
            delivery_rate = seen["count"] / max(seen["last"] - seen["first"], 1e-6)
            await http.patch(f"/v1/webhook-endpoints/{endpoint}", json={"disabled": True})
            # A backlog: a second endpoint that starts from the first event, as after an
            # outage; how fast it drains.
            backlog = await backlog_rate(http, engine_url=db_url, hook_port=hook_port)
        print(f"burst of {args.n} sends, endpoint disabled …", flush=True)
        without.append(await burst())
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
    await env.shutdown()

    baseline = sum(without) / len(without)
    report(
        f"events on sqlite, one worker: bursts of {args.n} sends (API calls "
        f"{args.burst_concurrency} at once); the baseline is the mean of the bursts without an "
        "endpoint, before and after",
        [
            Figure("sends with one endpoint subscribed", with_hook, "msg/s",
                   "without an endpoint", baseline, "ratio>=0.9"),
            Figure("webhook deliveries during the burst", delivery_rate, "evt/s"),
            Figure("webhook deliveries draining a backlog", backlog, "evt/s"),
        ],
        save_as="events",
    )  # fmt: skip


if __name__ == "__main__":
    run_bench(main)
