"""Privacy: erasing one candidate with many messages, and a retention sweep of many candidates.

    python bench/privacy.py [--messages 2000] [--candidates 10000] [--database-url URL]

It starts its own Temporal dev server, the API and one worker as separate processes, on a
throwaway SQLite database (or the PostgreSQL database given, which it fills and leaves). In one
run:
  1. one candidate with M messages (a quarter received, each with its raw bytes and a 20 KB
     attachment) erased through the API: messages per second, from the request to `done`;
  2. C closed candidates past their company's rule, two messages each, erased by one run of
     the retention sweep (started from its Schedule): candidates per second, from the trigger to
     the last `done`;
  3. the baseline: the same activities called in this process without Temporal, on a copy of
     each workload (M messages; C/10 candidates), so the ratio is what orchestration costs.
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
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, insert
from sqlmodel import Session, col, select

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from common import Figure, free_port, report, run_bench, spawn, stack_env, start_temporal, wait_http

from activities.accounts import Accounts
from activities.privacy import PrivacyActivities
from contracts.privacy import ErasureRef
from core.bootstrap import create_company
from core.db import make_engine
from core.migrate import upgrade
from core.models import (
    Attachment,
    Candidate,
    CompanyPrivacy,
    Erasure,
    InboundRaw,
    Message,
    utcnow,
)
from core.privacy import register_erasure
from core.run_ids import RETENTION_SCHEDULE_ID
from core.security import secret_box
from core.settings import Settings

ATTACHMENT = b"%PDF-1.4 " + os.urandom(20_000)


def seed(engine, company_id: uuid.UUID, candidates: int, messages_each: int) -> list[uuid.UUID]:
    """Closed candidates (40 days ago) with their messages, in a few large inserts."""
    closed = utcnow() - timedelta(days=40)
    ids = [uuid.uuid4() for _ in range(candidates)]
    now = utcnow()
    with Session(engine) as session:
        session.execute(
            insert(Candidate),
            [
                {
                    "id": i, "company_id": company_id, "name": f"Person {n}",
                    "email": f"person.{i.hex[:12]}@example.com", "application_status": "closed",
                    "closed_at": closed, "created_at": now, "updated_at": now,
                }
                for n, i in enumerate(ids)
            ],
        )  # fmt: skip
        for start in range(0, len(ids), 1000):
            rows, raws, files = [], [], []
            for candidate in ids[start : start + 1000]:
                for n in range(messages_each):
                    message_id, inbound = uuid.uuid4(), n % 4 == 3
                    raw_id = uuid.uuid4() if inbound else None
                    rows.append({
                        "id": message_id, "company_id": company_id, "candidate_id": candidate,
                        "direction": "inbound" if inbound else "outbound",
                        "status": "received" if inbound else "sent", "kind": "mail",
                        "from_address": f"person.{candidate.hex[:12]}@example.com",
                        "from_name": "Person", "to_addresses": ["jobs@example.com"],
                        "subject": f"Subject {n} about the role", "text": "Body text. " * 80,
                        "message_id_header": f"<{message_id.hex}@bench.example>",
                        "inbound_raw_id": raw_id, "attempts": 1,
                        "created_at": now, "updated_at": now,
                    })  # fmt: skip
                    if inbound:
                        raws.append({
                            "id": raw_id, "company_id": company_id, "raw": b"x" * 5000,
                            "sha256": "0" * 64, "size": 5000, "recipient": "jobs@example.com",
                            "mail_from": "p@example.com", "channel": "smtp", "received_at": now,
                            "state": "routed", "message_id": message_id,
                        })  # fmt: skip
                        files.append({
                            "id": uuid.uuid4(), "message_id": message_id, "filename": "cv.pdf",
                            "content_type": "application/pdf", "size": len(ATTACHMENT),
                            "sha256": "0" * 64, "content": ATTACHMENT,
                        })  # fmt: skip
            if raws:
                session.execute(insert(InboundRaw), raws)
            session.execute(insert(Message), rows)
            if files:
                session.execute(insert(Attachment), files)
            session.commit()
    return ids


def erased(engine, ids: list[uuid.UUID]) -> int:
    with Session(engine) as session:
        found = 0
        for start in range(0, len(ids), 1000):
            found += session.exec(
                select(func.count())
                .select_from(Erasure)
                .where(col(Erasure.candidate_id).in_(ids[start : start + 1000]))
                .where(Erasure.status == "done")
            ).one()
        return found


def in_process(engine, settings: Settings, ids: list[uuid.UUID]) -> float:
    """The erase-candidate steps for each candidate, called directly: seconds."""
    activities = PrivacyActivities(engine, Accounts(engine, settings, secret_box(settings)))
    started = time.perf_counter()
    for candidate_id in ids:
        with Session(engine) as session:
            candidate = session.get(Candidate, candidate_id)
            erasure = register_erasure(session, candidate, reason="retention")
            session.commit()
            ref = ErasureRef(str(erasure.id))
        activities.stop_sends(ref)
        activities.erase_outbox_copies(ref)
        while activities.erase_messages(ref).more:
            pass
        activities.finish_erasure(ref)
        activities.checkpoint_database(ref)
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="recruitmail-bench-privacy-"))
    print(f"state in {state}; starting Temporal …", flush=True)
    env = await start_temporal(state)
    api_port = free_port()
    db_url = args.database_url or f"sqlite:///{state / 'bench.db'}"
    settings_env = stack_env(
        state,
        db_url,
        env.client.service_client.config.target_host,
        api_port=api_port,
        reply_notifications="false",
    )
    settings = Settings(_env_file=None, state_dir=state, database_url=db_url)
    upgrade(db_url)
    engine = make_engine(db_url)
    with Session(engine, expire_on_commit=False) as session:
        made = create_company(
            session, name="Bench", slug=f"b{uuid.uuid4().hex[:8]}", admin_email="a@bench.example"
        )
        swept = create_company(
            session, name="Swept", slug=f"s{uuid.uuid4().hex[:8]}", admin_email="a@swept.example"
        )
        direct = create_company(
            session, name="Direct", slug=f"d{uuid.uuid4().hex[:8]}", admin_email="a@d.example"
        )
        session.add(CompanyPrivacy(company_id=swept.company.id, erase_after_days_closed=30))
        session.commit()
        token, swept_id = made.token, swept.company.id
        direct_id = direct.company.id
    print(f"seeding: 2 x {args.messages} messages, {args.candidates} + "
          f"{args.candidates // 10} candidates …", flush=True)  # fmt: skip
    [big] = seed(engine, made.company.id, 1, args.messages)
    [big_direct] = seed(engine, direct_id, 1, args.messages)
    many = seed(engine, swept_id, args.candidates, 2)
    direct_many = seed(engine, direct_id, args.candidates // 10, 2)

    procs: list[subprocess.Popen] = []
    try:
        procs.append(spawn(["worker"], settings_env, state / "worker.log"))
        procs.append(spawn(["api"], settings_env, state / "api.log"))
        api = f"http://127.0.0.1:{api_port}"
        await wait_http(f"{api}/readyz")
        headers = {"Authorization": f"Bearer {token}"}
        print(f"erasing one candidate with {args.messages} messages …", flush=True)
        async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as http:
            started = time.perf_counter()
            answer = await http.post(f"/v1/candidates/{big}/erase")
            answer.raise_for_status()
            while (await http.get(f"/v1/erasures/{answer.json()['id']}")).json()[
                "status"
            ] != "done":
                await asyncio.sleep(0.05)
            one = time.perf_counter() - started
        print(f"sweeping {args.candidates} candidates …", flush=True)
        schedule = env.client.get_schedule_handle(RETENTION_SCHEDULE_ID)
        started = time.perf_counter()
        while True:  # the worker created the Schedule when it started
            try:
                await schedule.trigger()
                break
            except Exception:
                await asyncio.sleep(0.2)
        last_print = started
        while (done := erased(engine, many)) < len(many):
            if time.perf_counter() - last_print > 15:
                last_print = time.perf_counter()
                print(f"  {done} of {len(many)} erased", flush=True)
            await asyncio.sleep(0.5)
        sweep = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    await env.shutdown()
    print("the same steps in this process, without Temporal …", flush=True)
    direct_one = in_process(engine, settings, [big_direct])
    direct_sweep = in_process(engine, settings, direct_many)
    engine.dispose()

    report(
        f"privacy on {make_engine(db_url).dialect.name}, one worker: an erasure of "
        f"{args.messages} messages (a quarter received, with raw bytes and a 20 KB attachment), "
        f"a retention sweep of {args.candidates} candidates (two messages each); baselines: the "
        "same activities called in-process without Temporal",
        [
            Figure("erasure of one candidate", args.messages / one, "msg/s",
                   "in-process", args.messages / direct_one),
            Figure("retention sweep", len(many) / sweep, "cand/s",
                   "in-process, one by one", len(direct_many) / direct_sweep),
        ],
        save_as="privacy",
    )  # fmt: skip


if __name__ == "__main__":
    run_bench(main)
