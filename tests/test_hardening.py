"""Defects an outside probe found (issue "hardening"): each test failed before its fix."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlmodel import Session

from api.schemas import CandidateCreate, SendMessageRequest
from core.inbound import parse
from core.mail import compose
from core.models import Direction, Message, MessageStatus
from core.tls import client_tls_context
from providers.smtp import SmtpSecurity, SmtpTarget, verify_smtp
from tests.fakes.smtp import SmtpSink
from tests.helpers import running_stack

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
    with SmtpSink() as sink:
        async with running_stack(
            temporal_client,
            engine,
            tmp_path,
            platform_transport="smtp",
            smtp_relay_url=f"smtp://127.0.0.1:{sink.port}",
        ) as stack:
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
    with SmtpSink() as sink:
        async with running_stack(
            temporal_client,
            engine,
            tmp_path,
            platform_transport="smtp",
            smtp_relay_url=f"smtp://127.0.0.1:{sink.port}",
        ) as stack:
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
    with SmtpSink() as sink:
        async with running_stack(
            temporal_client,
            engine,
            tmp_path,
            platform_transport="smtp",
            smtp_relay_url=f"smtp://127.0.0.1:{sink.port}",
        ) as stack:
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
    from api.routers.messages import start_send

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
