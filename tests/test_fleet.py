"""A fleet, as production runs it: two API processes, two workers and two inbound receivers on
PostgreSQL against one Temporal, a burst of mail in each direction, and a `kill -9` of one of
each halfway. Every accepted message is delivered once (bar the sends in flight at the kill),
every received message is routed once, and the two receivers' sweepers never route one twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import smtplib
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlmodel import Session, select

from core.db import make_engine
from core.migrate import upgrade
from core.models import InboundRaw, Message
from tests.fakes.net import free_port
from tests.fakes.smtp import SmtpSink
from tests.helpers import TEST_KEY, eventually

ADMIN_URL = os.environ.get("PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
OUTBOUND = 30
INBOUND = 30


@pytest.fixture
def postgres() -> Iterator[str]:
    """A scratch PostgreSQL database (the machine's server; CI starts it)."""
    name = f"recruitmail_fleet_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Fleet:
    def __init__(self, tmp: Path, database_url: str, temporal: str, relay_port: int) -> None:
        self.tmp = tmp
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RECRUITMAIL_")}
        self.env.update(
            RECRUITMAIL_ENVIRONMENT="test",
            RECRUITMAIL_STATE_DIR=str(tmp),
            RECRUITMAIL_DATABASE_URL=database_url,
            RECRUITMAIL_TEMPORAL_ADDRESS=temporal,
            RECRUITMAIL_TASK_QUEUE=f"fleet-{uuid.uuid4().hex[:8]}",
            RECRUITMAIL_SECRET_KEYS=TEST_KEY,
            RECRUITMAIL_INBOUND_SECRET="fleet-secret-fleet-secret",
            RECRUITMAIL_PLATFORM_TRANSPORT="smtp",
            RECRUITMAIL_SMTP_RELAY_URL=f"smtp://127.0.0.1:{relay_port}",
            RECRUITMAIL_PLATFORM_MAIL_DOMAIN="jobs.fleet.example",
            RECRUITMAIL_INBOUND_SWEEP_INTERVAL="2",
            RECRUITMAIL_LOG_FORMAT="text",
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.api_ports = [free_port(), free_port()]
        self.smtp_ports = [free_port(), free_port()]

    def start(self) -> None:
        for i in range(2):
            self._spawn(f"api{i}", ["api"], RECRUITMAIL_API_PORT=str(self.api_ports[i]))
            self._spawn(f"worker{i}", ["worker"])
            self._spawn(
                f"inbound{i}",
                ["inbound-smtp"],
                RECRUITMAIL_INBOUND_SMTP_PORT=str(self.smtp_ports[i]),
            )

    def _spawn(self, name: str, args: list[str], **extra: str) -> None:
        log = (self.tmp / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", *args],
            env={**self.env, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def company(self) -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "worker.cli", "company", "create", "Fleet", "--slug", "fleet",
             "--admin-email", "admin@fleet.example"],
            env=self.env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        return json.loads(done.stdout)


async def _up(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


def _deliver(ports: list[int], hosted: str, n: int) -> int:
    """One candidate's mail to the hosted address, through whichever receiver answers."""
    raw = (
        f"From: Candidate {n} <candidate{n}@outside.example>\r\nTo: {hosted}\r\n"
        f"Subject: Application {n}\r\nMessage-ID: <fleet-{n}@outside.example>\r\n\r\n"
        f"Hello, this is application {n}.\r\n"
    ).encode()
    for port in [ports[n % 2], ports[(n + 1) % 2]]:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.sendmail(f"candidate{n}@outside.example", [hosted], raw)
            return port
        except (OSError, smtplib.SMTPException):
            continue  # that receiver was killed: the sender's MTA tries the next MX
    raise AssertionError(f"no receiver took message {n}")


async def test_a_fleet_survives_losing_one_of_each(temporal_env, postgres, tmp_path):
    temporal = temporal_env.client.service_client.config.target_host
    with SmtpSink() as relay:
        fleet = Fleet(tmp_path, postgres, temporal, relay.port)
        company = fleet.company()
        fleet.start()
        try:
            for port in fleet.api_ports:
                await eventually(lambda port=port: _up(port), timeout=90, what=f"API :{port}")
            headers = {"Authorization": f"Bearer {company['admin_token']}"}
            accepted: list[str] = []
            async with httpx.AsyncClient(headers=headers, timeout=30) as http:
                candidate = (
                    await http.post(
                        f"http://127.0.0.1:{fleet.api_ports[1]}/v1/candidates",
                        json={"name": "Grace", "email": "grace@example.com"},
                    )
                ).json()
                for n in range(max(OUTBOUND, INBOUND)):
                    if n == OUTBOUND // 2:
                        fleet.kill("api0")
                        fleet.kill("worker0")
                        fleet.kill("inbound0")
                    if n < OUTBOUND:
                        accepted += await _send(http, fleet.api_ports, candidate["id"], n)
                    if n < INBOUND:
                        await asyncio.to_thread(
                            _deliver, fleet.smtp_ports, company["hosted_address"], n
                        )

                async def outcome() -> Counter:
                    found = Counter()
                    for message_id in accepted:
                        answer = await http.get(
                            f"http://127.0.0.1:{fleet.api_ports[1]}/v1/messages/{message_id}"
                        )
                        found[answer.json()["status"]] += 1
                    return found

                statuses = await eventually(
                    outcome, lambda c: c["sent"] == len(accepted), timeout=150, interval=1,
                    fail=False,
                )  # fmt: skip
            engine = make_engine(postgres)

            async def routed() -> list[InboundRaw]:
                with Session(engine) as session:
                    return list(session.exec(select(InboundRaw)).all())

            rows = await eventually(
                routed, lambda r: all(x.state != "stored" for x in r), timeout=90, fail=False
            )
            with Session(engine) as session:
                messages = session.exec(select(Message).where(Message.direction == "inbound")).all()
            engine.dispose()
        finally:
            fleet.stop()
    logs = "".join((tmp_path / f"{n}.log").read_text()[-1500:] for n in fleet.procs)
    assert len(accepted) >= OUTBOUND - 1, logs  # at most the one request the kill cut short
    assert statuses == Counter(sent=len(accepted)), (statuses, logs)
    delivered = Counter(" ".join(str(r.message["Message-ID"]).split()) for r in relay.received)
    assert len(delivered) == len(accepted)
    assert sum(delivered.values()) - len(accepted) <= 4  # the sends in flight at the kill
    assert all(row.state in ("routed", "duplicate") for row in rows), Counter(r.state for r in rows)
    by_id = Counter(m.message_id_header for m in messages)
    assert set(by_id) == {f"<fleet-{n}@outside.example>" for n in range(INBOUND)}
    assert set(by_id.values()) == {1}  # routed once, whichever receiver or sweeper started it


async def _send(http: httpx.AsyncClient, ports: list[int], candidate_id: str, n: int) -> list[str]:
    """Queue one message through the API the load balancer picks; on a dead API, the next."""
    for port in [ports[n % 2], ports[(n + 1) % 2]]:
        try:
            answer = await http.post(
                f"http://127.0.0.1:{port}/v1/candidates/{candidate_id}/messages",
                json={"subject": f"Fleet {n}", "text": "Hello"},
            )
        except httpx.HTTPError:
            continue
        if answer.status_code == 202:
            return [answer.json()["id"]]
    return []
