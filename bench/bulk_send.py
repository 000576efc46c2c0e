"""Bulk send throughput: N messages through API → BulkSend → the platform relay, against a bare
reused aiosmtplib connection to the same sink.

    python bench/bulk_send.py [-n 2000] [--batch-size 100] [--parallel 4] [--database-url URL]
                              [--workers N] [--sink fast|aiosmtpd|outbox]

It starts its own Temporal dev server, and the API and the worker as separate processes, on
free ports and a throwaway SQLite database (or --database-url). The sink runs in a process of
its own: bench/fast_sink.py (default), aiosmtpd's bench/sink.py, or the dev outbox through the
dev outbox transport. No throttle is configured. Targets: at least 1,000 messages/s, and at
least 0.5 times the bare connection; a send from a stored template (two language variants, a
fallback, half the candidates German) at least 0.9 times the same send in plain text.
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
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from common import (
    CpuMeter,
    Figure,
    cpu_figures,
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
from send_throughput import bare_workflows

from core.bootstrap import create_company
from core.db import make_engine
from core.mail import compose, new_message_id
from core.migrate import upgrade
from core.models import Candidate, utcnow


class Sink:
    """What a benchmark reads of its sink: how many messages arrived, and when the last did."""

    base = 0

    def read(self) -> tuple[int, float]:
        raise NotImplementedError

    @property
    def count(self) -> int:
        return self.read()[0] - self.base

    @property
    def last(self) -> float:
        return self.read()[1]

    def reset(self) -> None:
        self.base += self.count


class CountingSink(Sink):
    """A sink in its own process (bench/fast_sink.py, or aiosmtpd's bench/sink.py); reads its
    count and last arrival from a file."""

    def __init__(self, port: int, state: Path, script: str = "fast_sink.py") -> None:
        self.file = state / "sink-count"
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / script), str(port), str(self.file)]
        )

    def read(self) -> tuple[int, float]:
        try:
            count, last = self.file.read_text().split()
        except (FileNotFoundError, ValueError):
            return 0, 0.0
        return int(count), float(last)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class OutboxSink(CountingSink):
    """The dev outbox (`recruitmail dev-outbox`, aiosmtpd writing a file per message) as the
    sink; counts its files."""

    def __init__(self, state: Path, settings_env: dict[str, str]) -> None:
        self.folder = state / "outbox"
        self.proc = spawn(["dev-outbox"], settings_env, state / "outbox.log")

    def read(self) -> tuple[int, float]:
        files = list(self.folder.glob("*/*.json"))
        return len(files), max((path.stat().st_mtime for path in files), default=0.0)


def suppress_share(db_url: str, ids: list[str], share: float) -> int:
    """Put `share` of these candidates' addresses on their company's suppression list (as hard
    bounces would): the bulk send skips them."""
    from core.deliverability import suppression
    from core.statuses import SuppressionReason

    engine = make_engine(db_url)
    chosen = ids[:: round(1 / share)] if share else []
    with Session(engine) as session:
        for candidate_id in chosen:
            candidate = session.get(Candidate, uuid.UUID(candidate_id))
            assert candidate is not None
            suppression.suppress(
                session,
                candidate.company_id,
                candidate.email,
                SuppressionReason.HARD_BOUNCE,
                "550 5.1.1 user unknown",
            )
        session.commit()
    engine.dispose()
    return len(chosen)


def seed(db_url: str, n: int, languages: tuple[str | None, ...] = (None,)) -> tuple[str, list[str]]:
    """A company and `n` candidates, their languages taken in turn from `languages`."""
    engine = make_engine(db_url)
    with Session(engine, expire_on_commit=False) as session:
        created = create_company(
            session, name="Bench", slug=f"bench{uuid.uuid4().hex[:6]}", admin_email="a@b.example"
        )
        rows = [
            Candidate(
                company_id=created.company.id,
                name=f"Candidate {i}",
                email=f"c{i}@example.com",
                language=languages[i % len(languages)],
            )
            for i in range(n)
        ]
        session.add_all(rows)
        session.commit()
        ids = [str(r.id) for r in rows]
    engine.dispose()
    return created.token, ids


phases: dict[str, float] = {}


PLAIN = {
    "subject": "Your application, {{candidate.first_name}}",
    "text": "Dear {{candidate.name}},\nthank you for applying to {{company.name}}.\n\n"
    "{{sender.name}}",
}
TEMPLATE = {
    "name": "Bench update",
    "type": "update",
    "variants": [
        {
            "language": "en",
            "subject": "Your application, {{ candidate.first_name }}",
            "text": 'Dear {{ candidate.first_name | default("applicant") }},\nthank you for '
            "applying to {{ company.name }} for {{ job.title }}.\n\n{{ sender.name }}",
        },
        {
            "language": "de",
            "subject": "Ihre Bewerbung, {{ candidate.first_name }}",
            "text": 'Hallo {{ candidate.first_name | default("zusammen") }},\ndanke für Ihre '
            "Bewerbung bei {{ company.name }} als {{ job.title }}.\n\n{{ sender.name }}",
        },
    ],
}


async def make_template(api: str, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=60) as http:
        created = await http.post("/v1/templates", json=TEMPLATE)
        if created.status_code != 201:
            raise SystemExit(f"template refused: {created.text}")
        return str(created.json()["id"])


async def bulk(
    api: str,
    token: str,
    ids: list[str],
    sink: Sink,
    expect: int | None = None,
    content: dict | None = None,
) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=120) as http:
        start = time.time()
        answer = await http.post(
            "/v1/bulk-messages", json={"candidate_ids": ids, **(content or PLAIN)}
        )
        if answer.status_code != 202:
            raise SystemExit(f"bulk send refused: {answer.text}")
        job = answer.json()
        accepted = time.time()
        first_sent = None
        while True:
            state = (await http.get(f"/v1/bulk-messages/{job['id']}")).json()
            if first_sent is None and state["counts"]["sent"]:
                first_sent = time.time()
            if state["status"] in ("completed", "cancelled"):
                break
            await asyncio.sleep(0.05)
    # The sink writes its count every few messages: let it catch up with the last ones.
    expect = len(ids) if expect is None else expect
    for _ in range(100):
        if sink.count >= expect:
            break
        await asyncio.sleep(0.05)
    phases.update(
        accept=accepted - start,
        first_send=(first_sent or accepted) - accepted,
        sending=sink.last - (first_sent or accepted),
    )
    if state["counts"]["sent"] != expect or sink.count < expect:
        raise SystemExit(f"bulk send incomplete: {state['counts']}, sink got {sink.count}")
    return sink.last - start


async def bare(port: int, n: int) -> float:
    messages = [
        compose(
            from_address="acme-jobs@bench.example",
            from_name="Acme",
            to_address=f"c{i}@example.com",
            to_name=f"Candidate {i}",
            subject=f"Your application, Candidate {i}",
            text=f"Dear Candidate {i},\nthank you for applying to Acme.\n\nAcme",
            html=None,
            message_id=new_message_id("bench.example"),
            date=utcnow(),
        )[1]
        for i in range(n)
    ]
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    start = time.perf_counter()
    async with smtp:
        for composed in messages:
            await smtp.sendmail(composed.envelope_from, composed.envelope_to, composed.mime)
    return time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="recipients (default 2000)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=4, help="batches at once (default 4)")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temp dir")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (`worker --processes N`)"
    )
    parser.add_argument(
        "--sink",
        choices=["fast", "aiosmtpd", "outbox"],
        default="fast",
        help="the SMTP sink: a minimal asyncio one (default), aiosmtpd, or the dev outbox",
    )
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="recruitmail-bulk-bench-"))
    print(f"state in {state}; starting Temporal …", flush=True)
    env = await start_temporal(state)
    sink_port, api_port = free_port(), free_port()
    db_url = args.database_url or f"sqlite:///{state / 'bench.db'}"
    upgrade(db_url)
    settings_env = stack_env(
        state,
        db_url,
        env.client.service_client.config.target_host,
        api_port=api_port,
        platform_transport="smtp",
        smtp_relay_url=f"smtp://127.0.0.1:{sink_port}",
        bulk_batch_size=args.batch_size,
        bulk_parallel_batches=args.parallel,
    )
    sink: CountingSink
    if args.sink == "outbox":
        settings_env.update(
            RECRUITMAIL_PLATFORM_TRANSPORT="dev_outbox",
            RECRUITMAIL_DEV_OUTBOX_PORT=str(sink_port),
        )
        sink = OutboxSink(state, settings_env)
    else:
        sink = CountingSink(sink_port, state, "fast_sink.py" if args.sink == "fast" else "sink.py")
    wait_port(sink_port)
    procs: list[subprocess.Popen] = []
    try:
        procs.append(
            spawn(["worker", "--processes", str(args.workers)], settings_env, state / "worker.log")
        )
        procs.append(spawn(["api"], settings_env, state / "api.log"))
        api = f"http://127.0.0.1:{api_port}"
        await wait_http(f"{api}/readyz")
        token, warm_ids = seed(db_url, 20)
        await bulk(api, token, warm_ids, sink)  # warm-up: imports, connections, caches
        sink.reset()
        token, ids = seed(db_url, args.n)
        print(f"bulk send of {args.n} (batches of {args.batch_size}) …", flush=True)
        temporal_pid = pid_with(str(state / "temporal.db"))
        with CpuMeter(
            {"api": procs[1].pid, "worker": procs[0].pid, "temporal": temporal_pid}
        ) as cpu:
            pipeline_seconds = await bulk(api, token, ids, sink)
        main_phases = dict(phases)  # the measured send's (later sends overwrite `phases`)
        # The suppression list's cost: the same send with 10% of the recipients on it.
        sink.reset()
        token, suppressed_ids = seed(db_url, args.n)
        skipped = suppress_share(db_url, suppressed_ids, 0.1)
        print(f"bulk send of {args.n}, {skipped} of them suppressed …", flush=True)
        suppressed_seconds = await bulk(api, token, suppressed_ids, sink, expect=args.n - skipped)
        # The same send from a stored template: two language variants, a fallback, data.
        sink.reset()
        token, template_ids = seed(db_url, args.n, ("en", "de"))
        template_id = await make_template(api, token)
        print(f"bulk send of {args.n} from a template in two languages …", flush=True)
        template_seconds = await bulk(
            api,
            token,
            template_ids,
            sink,
            content={"template_id": template_id, "data": {"job": {"title": "Engineer"}}},
        )
        template_phases = dict(phases)
        # Each send here meets a bigger database than the one before: the template send is
        # compared with plain sends on both sides of it (their mean), not the first one alone.
        sink.reset()
        token, after_ids = seed(db_url, args.n)
        print(f"bulk send of {args.n} in plain text again …", flush=True)
        plain_after_seconds = await bulk(api, token, after_ids, sink)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
    print("bare workflow loop baseline …", flush=True)
    _, _, bare_cpu = await bare_workflows(env.client, 200, 8, temporal_pid)
    await env.shutdown()
    print("bare reused aiosmtplib connection …", flush=True)
    sink.reset()
    bare_seconds = await bare(sink_port, args.n)
    sink.stop()

    pipeline_rate = args.n / pipeline_seconds
    # The mean of the plain sends before (the first) and after the template send.
    bracket_rate = 2 * args.n / (pipeline_seconds + plain_after_seconds)
    bare_rate = args.n / bare_seconds
    report(
        f"bulk send: {args.n} messages, batches of {args.batch_size}, {args.parallel} at once, "
        f"{db_url.split(':')[0]}, {args.sink} sink",
        [
            Figure("bulk send (API → workflow → relay)", pipeline_rate, "msg/s",
                   "reused conn.", bare_rate, "ratio>=0.5"),
            Figure("bulk send rate", pipeline_rate, "msg/s", target="value>=1000"),
            *cpu_figures("bulk message", cpu, args.n, ("api", "worker"), bare_cpu, 200),
            # Each recipient planned, checked and sent or skipped: at most 5% slower than
            # the same send with an empty suppression list.
            Figure("recipients/s, 10% suppressed", args.n / suppressed_seconds, "rcpt/s",
                   "none suppressed", pipeline_rate, "ratio>=0.95"),
            # Rendering every recipient's variant (and checking every field) before queueing.
            Figure("bulk send from a template (2 languages)", args.n / template_seconds,
                   "msg/s", "plain, around it", bracket_rate, "ratio>=0.9"),
        ],
        save_as="bulk_send",
        raw={
            "messages": args.n,
            "pipeline_seconds": pipeline_seconds,
            "bare_seconds": bare_seconds,
            "suppressed": skipped,
            "suppressed_run_seconds": suppressed_seconds,
            "template_run_seconds": template_seconds,
            "plain_after_seconds": plain_after_seconds,
            "template_phases": template_phases,
            "phases": main_phases,
        },
    )  # fmt: skip
    print(
        "phases: API accepts {accept:.2f} s, plan until the first send {first_send:.2f} s, "
        "sending {sending:.2f} s".format(**main_phases)
    )


if __name__ == "__main__":
    run_bench(main)
