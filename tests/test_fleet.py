"""A fleet, as production runs it: two API processes, two workers and two inbound receivers on
PostgreSQL against one Temporal, a burst of mail in each direction, and a `kill -9` of one of
each halfway. Every accepted message is delivered once (bar the sends in flight at the kill),
every received message is routed once, and the two receivers' sweepers never route one twice.

Events ride along: a platform reads the feed with its cursor while both APIs (assigning
received mail) and both workers (sending, routing) write, and gets every event once, in order;
a webhook endpoint that answers slowly gets an event for every sent message, the ones whose
worker was killed between the send's commit and the delivery included.
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
from sqlmodel import Session, col, select

from core.db import make_engine
from core.migrate import upgrade
from core.models import Event, InboundRaw, Message, WebhookDelivery, WebhookEndpoint
from tests.fakes.net import free_port
from tests.fakes.smtp import SmtpSink
from tests.fakes.webhooks import WebhookReceiver
from tests.helpers import LOAD_SLACK, TEST_KEY, eventually

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
            # The webhook receiver is on loopback; the relay sink counts sends only.
            RECRUITMAIL_ALLOW_PRIVATE_HOSTS="true",
            RECRUITMAIL_REPLY_NOTIFICATIONS="false",
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
            # Four suites share the two cores with the fleet's six processes: a receiver may
            # take longer than 10 s to answer then (a sender's MTA waits minutes).
            with smtplib.SMTP("127.0.0.1", port, timeout=10 * LOAD_SLACK) as smtp:
                smtp.sendmail(f"candidate{n}@outside.example", [hosted], raw)
            return port
        except (OSError, smtplib.SMTPException):
            continue  # that receiver was killed: the sender's MTA tries the next MX
    raise AssertionError(f"no receiver took message {n}")


class Reader:
    """A platform reading the event feed with its cursor, from whichever API answers."""

    def __init__(self, http: httpx.AsyncClient, ports: list[int]) -> None:
        self.http, self.ports = http, ports
        self.cursor = ""
        self.events: list[dict] = []
        self.reads = 0
        self.stop = False

    async def read(self) -> int:
        for port in self.ports[::-1] if self.reads % 2 else self.ports:
            try:
                answer = await self.http.get(
                    f"http://127.0.0.1:{port}/v1/events", params={"after": self.cursor}
                )
            except httpx.HTTPError:
                continue  # that API was killed
            if answer.status_code == 200:
                page = answer.json()
                self.events += page["data"]
                self.cursor = page["next"]
                self.reads += 1
                return len(page["data"])
        return 0

    async def follow(self) -> None:
        while not self.stop:
            await self.read()
            await asyncio.sleep(0.2)

    async def drain(self) -> None:
        while await self.read():
            pass


async def _assign(
    http: httpx.AsyncClient, ports: list[int], candidate_id: str, done: set[str], n: int
) -> set[str]:
    """Assign a routed message through an API: the APIs write events too."""
    for port in [ports[n % 2], ports[(n + 1) % 2]]:
        try:
            listed = await http.get(f"http://127.0.0.1:{port}/v1/messages/unassigned")
            for message in listed.json():
                if message["id"] not in done:
                    answer = await http.post(
                        f"http://127.0.0.1:{port}/v1/messages/{message['id']}/assign",
                        json={"candidate_id": candidate_id},
                    )
                    return {message["id"]} if answer.status_code == 200 else set()
            return set()
        except httpx.HTTPError:
            continue
    return set()


async def _sent_events(receiver: WebhookReceiver) -> list[dict]:
    return receiver.events("message.sent")


async def test_a_fleet_survives_losing_one_of_each(temporal_env, postgres, tmp_path):
    temporal = temporal_env.client.service_client.config.target_host
    # The endpoint answers slowly, so deliveries lag behind the sends.
    with SmtpSink() as relay, WebhookReceiver(delay=0.3) as receiver:
        fleet = Fleet(tmp_path, postgres, temporal, relay.port)
        company = fleet.company()
        fleet.start()
        try:
            for port in fleet.api_ports:
                await eventually(lambda port=port: _up(port), timeout=90, what=f"API :{port}")
            headers = {"Authorization": f"Bearer {company['admin_token']}"}
            accepted: list[str] = []
            async with httpx.AsyncClient(headers=headers, timeout=30) as http:
                hook = await http.post(
                    f"http://127.0.0.1:{fleet.api_ports[1]}/v1/webhook-endpoints",
                    json={"url": receiver.url, "event_types": ["message.sent"]},
                )
                assert hook.status_code == 201, hook.text
                candidate = (
                    await http.post(
                        f"http://127.0.0.1:{fleet.api_ports[1]}/v1/candidates",
                        json={"name": "Grace", "email": "grace@example.com"},
                    )
                ).json()
                reader = Reader(http, fleet.api_ports)
                reading = asyncio.ensure_future(reader.follow())
                assigned: set[str] = set()
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
                    assigned |= await _assign(http, fleet.api_ports, candidate["id"], assigned, n)

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
                sent_events = await eventually(
                    lambda: _sent_events(receiver), lambda found: len(found) >= len(accepted),
                    timeout=120, interval=1, fail=False,
                )  # fmt: skip
                engine = make_engine(postgres)

                async def routed() -> list[InboundRaw]:
                    with Session(engine) as session:
                        return list(session.exec(select(InboundRaw)).all())

                rows = await eventually(
                    routed, lambda r: all(x.state != "stored" for x in r), timeout=90, fail=False
                )
                # Everything has happened: the reader reads to the end.
                reader.stop = True
                await reading
                await reader.drain()
            with Session(engine) as session:
                messages = session.exec(select(Message).where(Message.direction == "inbound")).all()
                committed = session.exec(
                    select(Event.id, Event.seq).where(
                        Event.company_id == uuid.UUID(company["company_id"]),
                        col(Event.endpoint_id).is_(None),
                    )
                ).all()
                # What became of each sent event's delivery, should one be missing below.
                deliveries = {
                    str(event.data.get("message_id")): (
                        event.seq, delivery.status if delivery else None,
                        delivery.attempts if delivery else None,
                        delivery.next_attempt_at if delivery else None,
                    )
                    for event, delivery in session.exec(
                        select(Event, WebhookDelivery)
                        .join(WebhookDelivery, isouter=True)
                        .where(Event.type == "message.sent")
                    ).all()
                }  # fmt: skip
                endpoints = [(e.cursor, e.disabled) for e in session.exec(select(WebhookEndpoint))]
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
    # The feed: every committed event once, in the order of its numbers, read while written.
    seen = [event["id"] for event in reader.events]
    assert len(seen) == len(set(seen)), "an event was repeated"
    assert set(seen) == {str(event_id) for event_id, _ in committed}, "an event was missed"
    order = {str(event_id): seq for event_id, seq in committed}
    assert [order[i] for i in seen] == sorted(order[i] for i in seen)
    assert reader.reads > 3  # it read while the fleet wrote
    assert len(assigned) >= 2  # the APIs wrote events too
    # The webhook: an event for every sent message, the killed worker's included.
    missing = set(accepted) - {e["data"]["message_id"] for e in sent_events}
    assert not missing, (
        {m: deliveries.get(m) for m in missing},
        endpoints,
        logs.count("Traceback"),
        logs,
    )
    assert {e["data"]["message_id"] for e in sent_events} == set(accepted)


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
