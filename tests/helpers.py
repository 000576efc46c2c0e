"""The shared test stack: a real worker on a fresh task queue, and the API in-process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from api.app import create_app
from core.bootstrap import create_company, create_user
from core.models import Company, Permission
from core.settings import Settings
from tests.fakes.smtp import SmtpSink
from worker.main import build_worker

T = TypeVar("T")
# A time limit in a test is several times what the code needs; in a parallel run (`make test`:
# four processes on two cores) the other processes take the CPU, and limits are tripled.
LOAD_SLACK = 3.0 if "PYTEST_XDIST_WORKER" in os.environ else 1.0


async def eventually(
    fetch: Callable[[], Awaitable[T]],
    until: Callable[[T], object] = bool,
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "the condition",
    fail: bool = True,
) -> T:
    """Fetch until `until(value)` holds, and return that value.

    After `timeout`, fail naming `what` and the last value (or, with fail=False, return the
    last value for the caller to assert on: visibility, say, lags by seconds).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await fetch()
        if until(value):
            return value
        if loop.time() > deadline:
            if not fail:
                return value
            raise AssertionError(f"{what} did not happen within {timeout} s; last: {value!r}")
        await asyncio.sleep(interval)


TEST_KEY = "test1:" + base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("=")


def test_settings(state_dir: Path, **overrides) -> Settings:
    values = {
        "environment": "test",
        "state_dir": state_dir,
        "platform_mail_domain": "jobs.test.example",
        # Short retries so the suite exercises backoff in seconds, not hours.
        "send_retry_initial_interval": timedelta(milliseconds=100),
        "send_retry_max_interval": timedelta(milliseconds=500),
        "send_retry_total": timedelta(seconds=60),
        "smtp_timeout_seconds": 10.0,
        # The suite's SMTP servers listen on loopback (production refuses internal hosts).
        "allow_private_hosts": True,
        # One key ring for the whole session: the Temporal client's codec and every stack's
        # secret box must agree.
        "secret_keys": [TEST_KEY],
        # Recruiters' reply emails go through the platform transport; the tests that count
        # what it sent would count them too. tests/test_events.py turns them on.
        "reply_notifications": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass
class Tenant:
    company: Company
    token: str
    headers: dict[str, str]
    admin_id: uuid.UUID
    admin_name: str


@dataclass
class Stack:
    settings: Settings
    engine: Engine
    client: Client
    http: httpx.AsyncClient
    app: Any = None  # the API's ASGI app (tests that serve it on a real port)

    def tenant(self, name: str = "Acme", admin_name: str = "Ada Admin") -> Tenant:
        slug = f"t{uuid.uuid4().hex[:12]}"
        with Session(self.engine, expire_on_commit=False) as session:
            created = create_company(
                session,
                name=name,
                slug=slug,
                admin_email=f"admin@{slug}.example.com",
                admin_name=admin_name,
            )
        return Tenant(
            created.company,
            created.token,
            {"Authorization": f"Bearer {created.token}"},
            created.admin.id,
            admin_name,
        )

    def user(self, tenant: Tenant, permissions: list[Permission], name: str = "Rita") -> dict:
        with Session(self.engine, expire_on_commit=False) as session:
            company = session.get(Company, tenant.company.id)
            _, token = create_user(
                session,
                company=company,
                email=f"{uuid.uuid4().hex[:8]}@example.com",
                name=name,
                permissions=[p.value for p in permissions],
            )
        return {"Authorization": f"Bearer {token}"}

    async def candidate(self, tenant: Tenant, **fields) -> dict:
        body = {"name": "Grace Hopper", "email": f"grace.{uuid.uuid4().hex[:6]}@example.com"}
        body.update(fields)
        response = await self.http.post("/v1/candidates", json=body, headers=tenant.headers)
        assert response.status_code == 201, response.text
        return response.json()

    async def send(self, tenant: Tenant, candidate_id: str, **fields) -> dict:
        body = {"subject": "Your application", "text": "Hello, thanks for applying!"}
        body.update(fields)
        response = await self.http.post(
            f"/v1/candidates/{candidate_id}/messages", json=body, headers=tenant.headers
        )
        assert response.status_code == 202, response.text
        return response.json()

    async def send_and_settle(self, tenant: Tenant, **fields) -> dict:
        """Send one message to a new candidate; return it once it is sent or failed."""
        candidate = await self.candidate(tenant)
        queued = await self.send(tenant, candidate["id"], **fields)
        return await self.wait_for_status(tenant, queued["id"], {"sent", "failed"})

    async def wait_for_status(
        self, tenant: Tenant, message_id: str, statuses: set[str], timeout: float = 60.0
    ) -> dict:
        async def message() -> dict:
            response = await self.http.get(f"/v1/messages/{message_id}", headers=tenant.headers)
            return response.json()

        return await eventually(
            message,
            lambda m: m["status"] in statuses,
            timeout=timeout,
            what=f"message {message_id} reaching {sorted(statuses)}",
        )


@asynccontextmanager
async def running_stack(
    client: Client, engine: Engine, state_dir: Path, *, worker: bool = True, **overrides
) -> AsyncIterator[Stack]:
    """A worker on its own task queue, and the API wired to the same settings (without
    `worker`, the API alone: a test runs its workers as processes of their own)."""
    settings = test_settings(state_dir, task_queue=f"test-{uuid.uuid4().hex[:10]}", **overrides)
    app = create_app(settings, engine=engine, temporal_client=client)
    running = build_worker(client, settings, engine) if worker else contextlib.nullcontext()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with running, httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield Stack(settings, engine, client, http, app)


def failure_message(error: BaseException) -> str:
    """The innermost ApplicationError's message of a workflow failure."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ApplicationError):
            return cause.message
        cause = cause.__cause__ if not isinstance(cause, WorkflowFailureError) else cause.cause
    raise AssertionError(f"no ApplicationError in {error!r}")


@asynccontextmanager
async def relay_stack(
    client: Client, engine: Engine, state_dir: Path, **overrides: object
) -> AsyncIterator[tuple[Stack, SmtpSink]]:
    """A stack whose platform transport is an SMTP relay: an aiosmtpd sink that keeps mail."""
    with SmtpSink() as sink:
        async with running_stack(
            client,
            engine,
            state_dir,
            platform_transport="smtp",
            smtp_relay_url=f"smtp://127.0.0.1:{sink.port}",
            **overrides,
        ) as stack:
            yield stack, sink


_PAYLOAD = "temporal.api.common.v1.Payload"


async def decoded_history(client: Client, workflow_id: str, run_id: str | None = None) -> bytes:
    """A run's whole history with every payload decoded through the client's codec (inputs,
    results, heartbeats, memos, and the encoded attributes of failures: their messages and
    stack traces), as protobuf bytes: what an operator holding the key could read."""
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    codec = client.data_converter.payload_codec
    assert codec is not None
    blob = []
    for event in history.events:
        await _decode_payloads(event, codec)
        blob.append(event.SerializeToString())
    return b"".join(blob)


async def _decode_payloads(message, codec) -> None:
    for field, value in message.ListFields():
        kind = field.message_type
        if kind is None:
            continue
        if kind.GetOptions().map_entry:
            inner = kind.fields_by_name["value"].message_type
            if inner is None:
                continue
            items = [value[key] for key in value]
            is_payload = inner.full_name == _PAYLOAD
        else:
            items = list(value) if field.is_repeated else [value]
            is_payload = kind.full_name == _PAYLOAD
        for item in items:
            if is_payload:
                [decoded] = await codec.decode([item])
                item.CopyFrom(decoded)
            else:
                await _decode_payloads(item, codec)


def new_company(engine: Engine) -> uuid.UUID:
    """A company in the database alone (no API, no worker): for tests of the domain rules."""
    with Session(engine, expire_on_commit=False) as session:
        slug = f"t{uuid.uuid4().hex[:12]}"
        created = create_company(
            session, name="Acme", slug=slug, admin_email=f"a@{slug}.example", admin_name="Ada"
        )
    return created.company.id
