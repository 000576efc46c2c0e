"""Mailbox sync: how soon a reply placed in a connected mailbox is visible in the API, and how
fast a resync imports, beside the same messages over SMTP in the same run.

    python bench/mailbox_sync.py [-n 40] [--resync 5000] [--poll 5]

It starts its own Temporal dev server, the API, the worker and the inbound SMTP receiver as
separate processes on free ports and a throwaway SQLite database, and the Microsoft fake (Graph
delta queries, messages and change notifications: tests/fakes/mailboxes.py) in this process.
A Microsoft connection with mailbox sync is signed in, tested and activated through the API.

- Lag: `n` replies placed one at a time, each timed from its placing until the API lists it;
  first with Graph's change notifications, then with notifications lost (the poll timer,
  RECRUITMAIL_SYNC_POLL_INTERVAL = --poll seconds).
- Resync: `--resync` replies placed while notifications are lost, then one notification: the
  import rate until every one is routed; beside it, the same number delivered over SMTP to the
  receiver (8 sessions), until routed.
Raw figures go to bench/results/mailbox_sync.json.
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

import aiosmtplib
import httpx
from sqlalchemy import func
from sqlmodel import Session, select

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from common import (
    Figure,
    bench_company,
    free_port,
    percentile,
    report,
    run_bench,
    spawn,
    stack_env,
    start_temporal,
    wait_http,
    wait_port,
)

from core.db import make_engine
from core.models import InboundRaw
from core.statuses import InboundState
from tests.fakes.mailboxes import reply
from tests.fakes.oauth import MicrosoftFake, client_context
from tests.fakes.tls import TestCA

DOMAIN = "jobs.bench.example"


def routed(engine, channels: tuple[str, ...]) -> int:
    with Session(engine) as session:
        return session.exec(
            select(func.count()).where(
                InboundRaw.channel.in_(channels),  # type: ignore[attr-defined]
                InboundRaw.state != InboundState.STORED,
            )
        ).one()


async def until(predicate, timeout: float, step: float = 0.05) -> float:
    start = time.monotonic()
    while not await predicate():
        if time.monotonic() - start > timeout:
            raise RuntimeError("timed out")
        await asyncio.sleep(step)
    return time.monotonic() - start


async def connect(http: httpx.AsyncClient, fake: MicrosoftFake, ca: TestCA, mailbox: str) -> str:
    fake.controls.mailbox = mailbox
    created = (
        await http.post(
            "/v1/connections",
            json={
                "kind": "microsoft",
                "custom_address": mailbox,
                "inbound_paths": ["mailbox_sync"],
            },
        )
    ).json()
    async with httpx.AsyncClient(verify=client_context(ca)) as browser:
        answer = await browser.get(created["authorization_url"])
        await http.get(answer.headers["location"], follow_redirects=True)

    async def tested() -> bool:
        found = (await http.get(f"/v1/connections/{created['id']}")).json()
        return found["status"] == "tested"

    await until(tested, 120, 0.3)
    await http.post(f"/v1/connections/{created['id']}/activate")

    async def syncing() -> bool:
        paths = (await http.get(f"/v1/connections/{created['id']}/inbound")).json()
        return paths["states"][0]["state"] == "active"

    await until(syncing, 120, 0.3)
    return created["id"]


async def lag(http, fake, mailbox: str, candidate: dict, n: int, label: str) -> list[float]:
    """Place one reply at a time; seconds until the candidate's tab lists it."""
    found: list[float] = []
    for i in range(n):
        text = f"{label} {i}"
        placed = time.monotonic()
        fake.mail.place(mailbox, reply(candidate["email"], mailbox, text=text))
        url = f"/v1/candidates/{candidate['id']}/messages"

        async def visible(text: str = text, url: str = url) -> bool:
            return any(m["text"].strip() == text for m in (await http.get(url)).json())

        await until(visible, 120)
        found.append(time.monotonic() - placed)
    return found


async def smtp_burst(port: int, to: str, sender: str, n: int, sessions: int = 8) -> None:
    async def session(worker: int) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
            for i in range(worker, n, sessions):
                raw = reply(sender, to, text=f"smtp {i}")
                await smtp.sendmail(sender, [to], raw)

    await asyncio.gather(*(session(w) for w in range(sessions)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="replies timed one by one (default 40)")
    parser.add_argument("--resync", type=int, default=5000, help="replies in the resync")
    parser.add_argument("--poll", type=int, default=5, help="the sync's poll interval, seconds")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="recruitmail-sync-bench-"))
    print(f"state in {state}; starting Temporal …", flush=True)
    env = await start_temporal(state)
    ca = TestCA.create(state / "ca")
    api_port, smtp_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    db_url = f"sqlite:///{state / 'bench.db'}"
    procs: list[subprocess.Popen] = []
    with MicrosoftFake(ca) as fake:
        settings_env = stack_env(
            state,
            db_url,
            env.client.service_client.config.target_host,
            api_port=api_port,
            public_url=api,
            inbound_smtp_port=smtp_port,
            platform_mail_domain=DOMAIN,
            ca_bundle=ca.ca_pem,
            allow_private_hosts="true",
            sync_poll_interval=args.poll,
            redirect_check_wait=5,
            mx_overrides=f"bench.example=127.0.0.1:{free_port()}",
            **fake.settings(),
        )
        token = bench_company(db_url)
        engine = make_engine(db_url)
        try:
            procs.append(spawn(["worker"], settings_env, state / "worker.log"))
            procs.append(spawn(["api"], settings_env, state / "api.log"))
            procs.append(spawn(["inbound-smtp"], settings_env, state / "inbound.log"))
            await wait_http(f"{api}/readyz")
            wait_port(smtp_port)
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=api, headers=headers, timeout=60) as http:
                mailbox = f"jobs-{uuid.uuid4().hex[:6]}@bench.example"
                await connect(http, fake, ca, mailbox)
                candidate = (
                    await http.post(
                        "/v1/candidates", json={"name": "Bench", "email": "cand@example.com"}
                    )
                ).json()
                print(f"lag with notifications, {args.n} replies …", flush=True)
                notified = await lag(http, fake, mailbox, candidate, args.n, "notified")
                fake.mail.notify = False
                print(f"lag by polling every {args.poll} s, {args.n} replies …", flush=True)
                polled = await lag(http, fake, mailbox, candidate, args.n, "polled")

                print(f"resync of {args.resync} replies …", flush=True)
                for i in range(args.resync):
                    fake.mail.place(mailbox, reply(candidate["email"], mailbox, text=f"r {i}"))
                before = routed(engine, ("graph",))
                [subscription] = fake.mail.subscriptions.values()
                started = time.monotonic()
                await asyncio.to_thread(fake.mail.lifecycle, subscription.id, "missed")

                async def imported() -> bool:
                    return routed(engine, ("graph",)) - before >= args.resync

                resync_seconds = await until(imported, 1800, 0.5)
                print(f"the same {args.resync} over SMTP …", flush=True)
                hosted = f"bench-jobs@{DOMAIN}"
                started = time.monotonic()
                await smtp_burst(smtp_port, hosted, "cand@example.com", args.resync)

                async def delivered() -> bool:
                    return routed(engine, ("smtp",)) >= args.resync

                await until(delivered, 1800, 0.5)
                smtp_seconds = time.monotonic() - started
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=15)
            engine.dispose()
    await env.shutdown()

    sync_rate, smtp_rate = args.resync / resync_seconds, args.resync / smtp_seconds
    report(
        f"mailbox sync (Microsoft fake) on SQLite: {args.n} replies timed one by one; a resync "
        f"of {args.resync} beside the same over SMTP (8 sessions); poll every {args.poll} s",
        [
            Figure("placed → visible, notified, p50", percentile(notified, 50) * 1000, "ms",
                   target="value<3000"),
            Figure("placed → visible, notified, p99", percentile(notified, 99) * 1000, "ms"),
            Figure("placed → visible, polled, p50", percentile(polled, 50) * 1000, "ms"),
            Figure("placed → visible, polled, p99", percentile(polled, 99) * 1000, "ms",
                   target=f"value<{(args.poll + 5) * 1000}"),
            Figure("resync: imported and routed", sync_rate, "msg/s", "SMTP path", smtp_rate,
                   "ratio>=0.5"),
        ],
        save_as="mailbox_sync",
        raw={
            "poll_interval_s": args.poll,
            "lag_notified_s": notified,
            "lag_polled_s": polled,
            "resync": {"messages": args.resync, "seconds": resync_seconds},
            "smtp": {"messages": args.resync, "seconds": smtp_seconds},
        },
    )  # fmt: skip


if __name__ == "__main__":
    run_bench(main)
