"""Defects an outside probe found (issue "hardening"): each test failed before its fix."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlmodel import Session

from api.schemas import CandidateCreate, SendMessageRequest
from core import netguard
from core.inbound import parse
from core.mail import compose
from core.models import Direction, Message, MessageStatus
from core.netguard import is_public
from core.tls import client_tls_context
from providers.smtp import SmtpSecurity, SmtpTarget, verify_smtp
from tests.fakes.net import TcpProxy, free_port
from tests.fakes.smtp import SmtpSink
from tests.helpers import TEST_KEY, eventually, relay_stack, running_stack

# -- every message ends ----------------------------------------------------------------------


def _composes(subject: str, text: str, name: str) -> None:
    compose(
        from_address="jobs@acme.example",
        from_name="Acme",
        to_address="grace@example.com",
        to_name=name,
        subject=subject,
        text=text,
        html=text,
        message_id="<a@acme.example>",
        date=datetime.now(UTC),
    )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(subject=st.text(max_size=40), text=st.text(max_size=80), name=st.text(max_size=30))
def test_whatever_the_api_accepts_compose_composes(subject, text, name):
    try:
        request = SendMessageRequest(subject=subject, text=text, html=text)
        candidate = CandidateCreate(name=name, email="grace@example.com")
    except ValidationError:
        return  # refused with a 422 that names the field: nothing to compose
    _composes(request.subject, request.text, candidate.name)


@given(st.sampled_from(["\x85", "\u2028", "\u2029", "\x0b", "\x1c", "\x00", "\ud800"]))
def test_line_separators_controls_and_surrogates_are_refused_in_subjects(char):
    try:
        SendMessageRequest(subject=f"Hello{char}there", text="body")
    except ValidationError as err:
        assert err.errors()[0]["loc"] == ("subject",)
    else:
        raise AssertionError(f"U+{ord(char):04X} was accepted")


async def test_the_api_refuses_a_unicode_line_separator_in_a_subject(
    temporal_client, engine, tmp_path
):
    async with relay_stack(temporal_client, engine, tmp_path) as (stack, sink):
        tenant = stack.tenant()
        candidate = await stack.candidate(tenant)
        answer = await stack.http.post(
            f"/v1/candidates/{candidate['id']}/messages",
            json={"subject": "Interview\u2028Tuesday", "text": "Hi\x00there"},
            headers=tenant.headers,
        )
    assert answer.status_code == 422
    assert "subject" in answer.json()["detail"] and "U+2028" in answer.json()["detail"]
    assert sink.received == []


async def test_a_message_that_cannot_be_composed_ends_failed_at_once(
    temporal_client, engine, tmp_path
):
    """A row the API would refuse today (written before the rule, or imported) fails with the
    reason instead of retrying for ever at `queued`."""
    async with relay_stack(temporal_client, engine, tmp_path) as (stack, sink):
        tenant = stack.tenant()
        candidate = await stack.candidate(tenant)
        message_id = _old_row(stack, tenant, candidate["id"], subject="Interview\u2028Tue")
        await _start(stack, tenant, message_id)
        ended = await stack.wait_for_status(tenant, message_id, {"sent", "failed"}, 30)
    assert ended["status"] == "failed"
    assert "could not be prepared" in ended["error"] and "cannot go into an email" in ended["error"]
    assert sink.received == []


async def test_a_message_whose_rows_are_gone_ends_failed(temporal_client, engine, tmp_path):
    """The database path: the candidate it was for no longer exists."""
    async with relay_stack(temporal_client, engine, tmp_path) as (stack, _):
        tenant = stack.tenant()
        message_id = _old_row(stack, tenant, None, subject="Hello")
        await _start(stack, tenant, message_id)
        ended = await stack.wait_for_status(tenant, message_id, {"sent", "failed"}, 30)
    assert ended["status"] == "failed"
    assert "could not be prepared" in ended["error"] and "deleted" in ended["error"]


def _old_row(stack, tenant, candidate_id: str | None, *, subject: str) -> str:
    message = Message(
        company_id=tenant.company.id,
        candidate_id=uuid.UUID(candidate_id) if candidate_id else None,
        direction=Direction.OUTBOUND,
        status=MessageStatus.QUEUED,
        subject=subject,
        text="Hello",
        message_id_header=f"<{uuid.uuid4().hex}@jobs.test.example>",
    )
    message.workflow_id = message.run_id
    with Session(stack.engine) as session:
        session.add(message)
        session.commit()
        return str(message.id)


async def _start(stack, tenant, message_id: str) -> None:
    from api.runs import start_send

    with Session(stack.engine) as session:
        message = session.get(Message, uuid.UUID(message_id))
    assert await start_send(stack.client, stack.settings, message)


# -- truthful steps ----------------------------------------------------------------------------


async def test_a_test_without_certificate_verification_says_so_in_a_warning(test_ca):
    context = test_ca.server_context("selfsigned", ["localhost", "127.0.0.1"])
    address = "jobs@acme-corp.example.com"
    with SmtpSink(tls_context=context, credentials=(address, "pw")) as sink:
        target = SmtpTarget(
            "127.0.0.1", sink.port, SmtpSecurity.STARTTLS, address, "pw", verify_certificate=False
        )
        # No CA: the certificate is not trusted, and the test must not claim it was verified.
        result = await verify_smtp(
            target, address, tls_context=client_tls_context(verify=False), timeout=5
        )
    steps = {s.name: s for s in result.steps}
    assert result.ok
    assert "not verified" in steps["tls_handshake"].detail
    assert "certificate verified" not in steps["tls_handshake"].detail
    assert steps["certificate"].status == "warning"
    assert "NOT verified" in steps["certificate"].detail


# -- text hygiene ----------------------------------------------------------------------------


def test_a_boundary_mismatch_shows_the_text_with_a_readable_defect():
    raw = (
        b"From: Grace <grace@example.com>\r\nTo: acme-jobs@jobs.test.example\r\n"
        b"Subject: My application\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="AAA"\r\n\r\n'
        b"--BBB\r\nContent-Type: text/plain\r\n\r\nHello, my CV follows.\r\n--BBB--\r\n"
    )
    parsed = parse(raw)
    assert "Hello, my CV follows." in parsed.text
    assert parsed.defects and all(d.strip() for d in parsed.defects)
    assert "boundary" in parsed.defects[0]


def test_nul_and_control_characters_are_refused_in_message_text():
    for text in ("Hello\x00", "a\x07b", "x\x1by"):
        try:
            SendMessageRequest(subject="Hi", text=text)
        except ValidationError as err:
            assert err.errors()[0]["loc"] == ("text",)
        else:
            raise AssertionError(repr(text))
    assert SendMessageRequest(subject="Hi", text="tabs\tand\r\nlines are fine").text


# -- recovery --------------------------------------------------------------------------------


async def _refused(proxy: TcpProxy) -> bool:
    return proxy.refused > 0


async def test_a_worker_stops_within_its_grace_while_temporal_is_unreachable(
    temporal_env, tmp_path
):
    target = temporal_env.client.service_client.config.target_host
    host, _, port = target.rpartition(":")
    proxy = TcpProxy(host, int(port))
    queue = f"grace-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECRUITMAIL_")}
    env.update(
        RECRUITMAIL_STATE_DIR=str(tmp_path),
        RECRUITMAIL_SECRET_KEYS=TEST_KEY,
        RECRUITMAIL_TEMPORAL_ADDRESS=f"127.0.0.1:{await proxy.start()}",
        RECRUITMAIL_TASK_QUEUE=queue,
        RECRUITMAIL_SHUTDOWN_GRACE_SECONDS="3",
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        await eventually(
            lambda: _has_poller(temporal_env.client, queue), timeout=60, what="the worker polling"
        )
        await proxy.cut()  # Temporal goes away under the running worker
        await eventually(lambda: _refused(proxy), what="the worker trying to reconnect")
        started = time.monotonic()
        worker.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(worker.wait, 30)
        elapsed = time.monotonic() - started
    finally:
        if worker.poll() is None:
            worker.kill()
    output = worker.stdout.read().decode() if worker.stdout else ""
    assert elapsed < 3 + 5, output
    assert code is not None, output


async def _has_poller(client, queue: str) -> bool:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return len(answer.pollers) > 0


# -- bounded input ---------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_300_mb_unauthenticated_body_is_refused_before_it_is_read(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECRUITMAIL_")}
    port = free_port()
    env.update(
        RECRUITMAIL_STATE_DIR=str(tmp_path),
        RECRUITMAIL_SECRET_KEYS=TEST_KEY,
        RECRUITMAIL_API_PORT=str(port),
        RECRUITMAIL_LOG_FORMAT="text",
    )
    subprocess.run(
        [sys.executable, "-m", "worker.cli", "db", "upgrade"],
        env=env,
        check=True,
        capture_output=True,
    )
    api = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:

            async def up() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(up, timeout=60, what="the API")
            before = _rss_kib(api.pid)
            # Declared: refused from the header alone, before a byte of the body is sent.
            declared_status, declared_body = await _declare_300_mb(port)

            async def chunks():
                block = b"{" * (1024 * 1024)
                for _ in range(300):
                    yield block

            # Streamed without a length: refused once past the limit.
            try:
                streamed = await http.post("/v1/candidates", content=chunks())
                streamed_status = streamed.status_code
                streamed_body = streamed.json()
            except httpx.HTTPError:
                streamed_status, streamed_body = 413, {"detail": "connection closed"}
            # A later request is answered only once the refused one is done with.
            assert (await http.get("/healthz")).status_code == 200
            after = _rss_kib(api.pid)
    finally:
        api.terminate()
        api.wait(30)
    assert declared_status == 413
    assert "RECRUITMAIL_MAX_REQUEST_BYTES" in declared_body["detail"]
    assert declared_body["errors"]
    assert streamed_status == 413, streamed_body
    assert after - before < 50 * 1024, (before, after)


async def _declare_300_mb(port: int) -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/candidates HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {300 * 1024 * 1024}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.split(b"\r\n")
    length = next(int(h.split(b":")[1]) for h in lines if h.lower().startswith(b"content-length"))
    body = await reader.readexactly(length)
    writer.close()
    return int(lines[0].split(b" ")[1]), json.loads(body)


async def test_deeply_nested_json_to_the_mailjet_webhook_is_a_clear_4xx(
    temporal_client, engine, tmp_path
):
    async with running_stack(
        temporal_client, engine, tmp_path, inbound_secret="s3cret-s3cret-s3cret"
    ) as stack:
        headers = {"Authorization": "Bearer s3cret-s3cret-s3cret"}
        deep = await stack.http.post(
            "/inbound/mailjet", content=b"[" * 100_000 + b"]" * 100_000, headers=headers
        )
        after = await stack.http.get("/healthz")
        not_object = await stack.http.post("/inbound/mailjet", content=b"[1, 2]", headers=headers)
    assert deep.status_code == 422, deep.text
    assert "nests more than" in deep.json()["detail"]
    assert after.status_code == 200
    assert not_object.status_code == 422


# -- no probing through the test -----------------------------------------------------------


def test_internal_addresses_are_not_public():
    for address in (
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "::1", "fe80::1", "fd00:ec2::254", "::ffff:127.0.0.1", "224.0.0.1",
        # IPv6 that leads to IPv4 (probe): NAT64, 6to4, IPv4-compatible.
        "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1", "2002:7f00:1::1",
        "2002:a00:1::", "::127.0.0.1", "::10.0.0.1", "::",
    ):  # fmt: skip
        assert not is_public(address), address
    for address in ("8.8.8.8", "2001:4860:4860::8888", "93.184.216.34", "64:ff9b::808:808"):
        assert is_public(address), address


async def test_a_connection_test_refuses_internal_hosts_unless_allowed(
    temporal_client, engine, tmp_path
):
    with SmtpSink() as server:
        async with running_stack(
            temporal_client, engine, tmp_path, allow_private_hosts=False, allow_insecure_smtp=True
        ) as stack:
            tenant = stack.tenant()
            address = f"jobs-{uuid.uuid4().hex[:8]}@acme-corp.example.com"
            body = {
                "kind": "smtp",
                "custom_address": address,
                "smtp": {
                    "host": "127.0.0.1",
                    "port": server.port,
                    "security": "none",
                    "username": address,
                    "password": "pw",
                },
            }
            created = await stack.http.post("/v1/connections", json=body, headers=tenant.headers)
            assert created.status_code == 202, created.text
            tested = await stack.http.post(
                f"/v1/connections/{created.json()['id']}/test", headers=tenant.headers
            )
    steps = {s["name"]: s for s in tested.json()["steps"]}
    assert tested.json()["status"] == "test_failed"
    assert steps["dns"]["status"] == "failed" and "internal address" in steps["dns"]["detail"]
    assert "resolves to 127" not in steps["dns"]["detail"]  # what it resolves to is not said
    assert "tcp_connect" not in steps
    assert server.handler.sessions == 0  # nothing reached the port


async def test_refused_and_timed_out_connections_read_the_same(monkeypatch):
    answers = []
    port = free_port()
    for failure in (ConnectionRefusedError(111, "Connection refused"), TimeoutError()):

        async def fail(*args, failure=failure, **kwargs):
            raise failure

        monkeypatch.setattr(netguard, "connect", fail)
        result = await verify_smtp(
            SmtpTarget("127.0.0.1", port, SmtpSecurity.STARTTLS, "a@b.example", "pw"),
            "a@b.example",
            tls_context=client_tls_context(),
            timeout=2,
        )
        answers.append(result.error)
    assert answers[0] == answers[1]
    assert "refused" not in answers[0] and "timed out" not in answers[0]


# -- local files (the dev outbox: test_probe.py) -------------------------------------------


def test_a_new_sqlite_database_is_readable_by_its_owner_only(tmp_path):
    from core.db import make_engine

    path = tmp_path / "new.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- the OpenAPI document ------------------------------------------------------------------


def test_the_openapi_document_declares_our_error_model_and_no_stray_options(tmp_path):
    from api.app import create_app
    from tests.helpers import test_settings

    document = create_app(test_settings(tmp_path)).openapi()
    send = document["paths"]["/v1/candidates/{candidate_id}/messages"]["post"]["responses"]
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    assert send["422"]["content"]["application/json"]["schema"] == error
    assert send["404"]["content"]["application/json"]["schema"] == error
    assert "HTTPValidationError" not in document["components"]["schemas"]
    detail = document["components"]["schemas"]["ErrorResponse"]["properties"]["detail"]
    assert detail["type"] == "string"
    assert not any("options" in ops for ops in document["paths"].values())


# -- nothing stranded ----------------------------------------------------------------------


async def test_a_queued_message_without_a_run_is_started_by_the_sweeper(
    temporal_client, engine, tmp_path
):
    """The API died between its commit and Temporal's: the row is `queued` with no run."""
    from datetime import timedelta

    from worker.sweeper import sweep_once

    async with relay_stack(
        temporal_client, engine, tmp_path, send_sweep_interval=timedelta(seconds=0)
    ) as (stack, sink):
        tenant = stack.tenant()
        candidate = await stack.candidate(tenant)
        message_id = _old_row(stack, tenant, candidate["id"], subject="Stranded")
        # Two workers sweep at once: one run, one delivery.
        swept = await asyncio.gather(
            sweep_once(stack.client, stack.settings, stack.engine),
            sweep_once(stack.client, stack.settings, stack.engine),
        )
        ended = await stack.wait_for_status(tenant, message_id, {"sent", "failed"}, 30)
        after = await sweep_once(stack.client, stack.settings, stack.engine)
    assert sum(swept) >= 1
    assert ended["status"] == "sent"
    # The sweep covers the whole database, which earlier tests of this process share: count
    # this message's deliveries.
    ours = [r for r in sink.received if candidate["email"] in r.rcpt_tos]
    assert after == 0 and len(ours) == 1
