"""Sending through the platform transport, end to end: API → SendMessage workflow → peer."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

from sqlmodel import Session
from temporalio.client import WorkflowHistory

from api.runs import start_send
from core.models import Message
from tests.fakes.mailjet import MailjetFake
from tests.fakes.smtp import SmtpSink
from tests.helpers import decoded_history, running_stack
from workflows.send import SendMessageWorkflow


def relay(sink: SmtpSink, scheme: str = "smtp", userinfo: str = "") -> dict:
    return {
        "platform_transport": "smtp",
        "smtp_relay_url": f"{scheme}://{userinfo}127.0.0.1:{sink.port}",
    }


def mailjet_settings(fake: MailjetFake) -> dict:
    return {
        "platform_transport": "mailjet",
        "mailjet_api_url": fake.url,
        "mailjet_api_key": fake.api_key,
        "mailjet_api_secret": fake.api_secret,
    }


async def _ended(stack, message: dict) -> None:
    """Wait for the message's send-message run to close."""
    await stack.client.get_workflow_handle(message["workflow_id"]).result()


async def test_send_arrives_once_with_company_sender(temporal_client, engine, tmp_path):
    with SmtpSink() as sink:
        async with running_stack(temporal_client, engine, tmp_path, **relay(sink)) as stack:
            tenant = stack.tenant(name="Acme Robotics")
            candidate = await stack.candidate(tenant, name="Zoë Ångström")
            queued = await stack.send(
                tenant, candidate["id"], subject="Interview on Monday", text="Dear Zoë,\nsee you."
            )
            assert queued["status"] == "queued"
            sent = await stack.wait_for_status(tenant, queued["id"], {"sent", "failed"})
            await _ended(stack, sent)  # the run is over: no delivery can follow

    assert sent["status"] == "sent", sent
    assert sent["sent_at"] and sent["error"] is None
    assert len(sink.received) == 1
    got = sink.received[0]
    hosted = f"{tenant.company.slug}-jobs@jobs.test.example"
    assert got.mail_from == hosted
    assert got.rcpt_tos == [candidate["email"]]
    msg = got.message
    assert msg["From"].addresses[0].addr_spec == hosted
    assert msg["From"].addresses[0].display_name == "Acme Robotics"
    assert msg["To"].addresses[0].display_name == "Zoë Ångström"
    assert msg["Subject"] == "Interview on Monday"
    assert (
        msg.get_body(("plain",)).get_content().replace("\r\n", "\n").strip()
        == "Dear Zoë,\nsee you."
    )
    assert msg["Message-ID"].strip() == queued["message_id_header"]
    assert sent["from_address"] == hosted


async def test_employee_sender_name(temporal_client, engine, tmp_path):
    with SmtpSink() as sink:
        async with running_stack(temporal_client, engine, tmp_path, **relay(sink)) as stack:
            tenant = stack.tenant(name="Acme", admin_name="Ada Lovelace")
            response = await stack.http.patch(
                "/v1/mail-settings", json={"sender_name_mode": "employee"}, headers=tenant.headers
            )
            assert response.status_code == 200
            assert response.json()["sender_name_mode"] == "employee"
            sent = await stack.send_and_settle(tenant)
            history = await decoded_history(temporal_client, f"send-message-{sent['id']}")

    assert sent["status"] == "sent" and sent["from_name"] == "Ada Lovelace"
    sender = sink.received[0].message["From"].addresses[0]
    assert sender.display_name == "Ada Lovelace"
    assert sender.addr_spec == f"{tenant.company.slug}-jobs@jobs.test.example"
    # The employee's name is personal data: in the mail and the row, not in the run's history
    # even as an operator with the key reads it.
    assert sent["id"].encode() in history and b"Lovelace" not in history


async def test_transient_451_is_retried_until_sent(temporal_client, engine, tmp_path):
    script = ["451 4.3.0 Try again later", "451 4.3.0 Try again later"]
    with SmtpSink(data_script=script) as sink:
        async with running_stack(temporal_client, engine, tmp_path, **relay(sink)) as stack:
            tenant = stack.tenant()
            sent = await stack.send_and_settle(tenant)

    assert sent["status"] == "sent", sent
    assert sent["attempts"] == 3
    assert sink.handler.data_attempts == 3
    assert len(sink.received) == 1


async def test_permanent_550_fails_at_once_with_a_readable_reason(
    temporal_client, engine, tmp_path
):
    with SmtpSink(data_script=["550 5.1.1 <nobody@example.com>: mailbox unavailable"]) as sink:
        async with running_stack(temporal_client, engine, tmp_path, **relay(sink)) as stack:
            tenant = stack.tenant()
            failed = await stack.send_and_settle(tenant)
            await _ended(stack, failed)  # the run is over: no retry can follow

    assert failed["status"] == "failed"
    assert "refused the message" in failed["error"]
    assert "550 5.1.1" in failed["error"]
    assert "Traceback" not in failed["error"]
    assert failed["attempts"] == 1
    assert sink.handler.data_attempts == 1
    assert sink.received == []


async def test_retries_give_up_after_the_cap_with_the_last_reason(
    temporal_client, engine, tmp_path
):
    with SmtpSink(data_script=["421 4.7.0 Too busy"] * 100) as sink:
        async with running_stack(
            temporal_client,
            engine,
            tmp_path,
            **relay(sink),
            send_retry_total=timedelta(seconds=3),
        ) as stack:
            tenant = stack.tenant()
            failed = await stack.send_and_settle(tenant)

    assert failed["status"] == "failed"
    assert failed["error"].startswith("Gave up after")
    assert "421" in failed["error"]
    assert failed["attempts"] >= 2
    assert sink.received == []


async def test_relay_with_starttls_auth_and_a_private_ca(
    temporal_client, engine, tmp_path, test_ca
):
    context = test_ca.server_context("relay", ["localhost", "127.0.0.1"])
    with SmtpSink(tls_context=context, credentials=("relay-user", "s3cret/pw")) as sink:
        settings = relay(sink, "smtp+starttls", "relay-user:s3cret%2Fpw@")
        async with running_stack(
            temporal_client, engine, tmp_path, **settings, ca_bundle=test_ca.ca_pem
        ) as stack:
            tenant = stack.tenant()
            sent = await stack.send_and_settle(tenant)
    assert sent["status"] == "sent", sent
    assert len(sink.received) == 1


async def test_relay_with_an_untrusted_certificate_fails_without_retrying(
    temporal_client, engine, tmp_path, test_ca
):
    context = test_ca.server_context("relay-untrusted", ["localhost", "127.0.0.1"])
    with SmtpSink(tls_context=context, credentials=("u", "p")) as sink:
        # No ca_bundle: the system store does not know the test CA.
        async with running_stack(
            temporal_client, engine, tmp_path, **relay(sink, "smtp+starttls", "u:p@")
        ) as stack:
            tenant = stack.tenant()
            failed = await stack.send_and_settle(tenant)
    assert failed["status"] == "failed"
    assert "not trusted" in failed["error"]
    assert failed["attempts"] == 1
    assert sink.received == []


async def test_mailjet_transport(temporal_client, engine, tmp_path):
    throttled = (429, {"Retry-After": "1"}, {"ErrorMessage": "Too many requests"})
    with MailjetFake(script=[throttled]) as mailjet:
        async with running_stack(
            temporal_client,
            engine,
            tmp_path,
            **mailjet_settings(mailjet),
        ) as stack:
            tenant = stack.tenant(name="Acme")
            candidate = await stack.candidate(tenant, name="Alan Turing")
            queued = await stack.send(
                tenant, candidate["id"], subject="Hello", text="Plain", html="<p>Rich</p>"
            )
            sent = await stack.wait_for_status(tenant, queued["id"], {"sent", "failed"})

    assert sent["status"] == "sent", sent
    assert sent["attempts"] == 2  # the 429 was retried after its Retry-After
    assert len(mailjet.sent) == 1
    item = mailjet.sent[0]
    assert item["From"] == {
        "Email": f"{tenant.company.slug}-jobs@jobs.test.example",
        "Name": "Acme",
    }
    assert item["To"] == [{"Email": candidate["email"], "Name": "Alan Turing"}]
    assert item["Subject"] == "Hello"
    assert item["TextPart"].strip() == "Plain"
    assert item["HTMLPart"].strip() == "<p>Rich</p>"
    assert item["Headers"]["Message-ID"] == queued["message_id_header"]
    assert item["CustomID"] == queued["id"]


async def test_mailjet_refusal_is_permanent(temporal_client, engine, tmp_path):
    refusal = (
        400,
        {},
        {
            "Messages": [
                {
                    "Status": "error",
                    "Errors": [
                        {
                            "ErrorCode": "mj-0013",
                            "StatusCode": 400,
                            "ErrorMessage": '"x@" is an invalid email address.',
                        }
                    ],
                }
            ]
        },
    )
    with MailjetFake(script=[refusal]) as mailjet:
        async with running_stack(
            temporal_client,
            engine,
            tmp_path,
            **mailjet_settings(mailjet),
        ) as stack:
            tenant = stack.tenant()
            failed = await stack.send_and_settle(tenant)
    assert failed["status"] == "failed"
    assert "Mailjet refused the message" in failed["error"]
    assert "invalid email address" in failed["error"]
    assert len(mailjet.requests) == 1


async def test_history_holds_neither_subject_nor_body(temporal_client, engine, tmp_path):
    subject = "Offer letter 7f3a9c"
    body = "Salary 93,456 EUR - confidential body b41d"
    with SmtpSink() as sink:
        async with running_stack(temporal_client, engine, tmp_path, **relay(sink)) as stack:
            tenant = stack.tenant()
            candidate = await stack.candidate(tenant)
            queued = await stack.send(tenant, candidate["id"], subject=subject, text=body)
            await stack.wait_for_status(tenant, queued["id"], {"sent"})
            handle = temporal_client.get_workflow_handle(f"send-message-{queued['id']}")
            history: WorkflowHistory = await handle.fetch_history()

    dumped = json.dumps(history.to_json_dict())
    raw = b"".join(e.SerializeToString() for e in history.events)
    assert queued["id"] in dumped  # the history is readable, and holds the message id
    for secret in (subject, body, "7f3a9c", "b41d"):
        assert secret not in dumped
        assert secret.encode() not in raw
    assert sink.received[0].message["Subject"] == subject


async def test_a_second_start_for_the_same_message_is_rejected(temporal_client, engine, tmp_path):
    """The API's own start call, made again for a message already sent, starts nothing."""
    with SmtpSink() as sink:
        async with running_stack(temporal_client, engine, tmp_path, **relay(sink)) as stack:
            tenant = stack.tenant()
            candidate = await stack.candidate(tenant)
            queued = await stack.send(tenant, candidate["id"])
            await stack.wait_for_status(tenant, queued["id"], {"sent"})
            with Session(engine) as session:
                message = session.get(Message, uuid.UUID(queued["id"]))
            await temporal_client.get_workflow_handle(message.run_id).result()  # closed
            assert await start_send(temporal_client, stack.settings, message) is False
            runs = [
                r
                async for r in temporal_client.list_workflows(
                    f"WorkflowId = '{message.workflow_id}'"
                )
            ]
    assert len(runs) == 1
    assert len(sink.received) == 1


async def test_runs_are_searchable_by_company_and_status(temporal_client, engine, tmp_path):
    with SmtpSink() as sink:
        async with running_stack(temporal_client, engine, tmp_path, **relay(sink)) as stack:
            tenant = stack.tenant()
            candidate = await stack.candidate(tenant)
            queued = await stack.send(tenant, candidate["id"])
            handle = temporal_client.get_workflow_handle_for(
                SendMessageWorkflow.run, queued["workflow_id"]
            )
            result = await handle.result()
            assert result.status == "sent"

    query = f"CompanyId = '{tenant.company.id}' AND MailStatus = 'sent'"
    found: list[str] = []
    for _ in range(100):  # visibility lags a few seconds under load
        found = [w.id async for w in temporal_client.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.2)
    assert found == [f"send-message-{queued['id']}"]
