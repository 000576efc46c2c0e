"""Events with real peers: a webhook receiver on loopback that verifies every delivery with the
`standardwebhooks` package, as a platform would; the feed read with a cursor; reply
notifications through the platform relay's SMTP sink."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from email import message_from_bytes

import pytest
from sqlmodel import Session, select
from standardwebhooks import Webhook, WebhookVerificationError

from core import netguard
from core.models import Event, EventConsumer, Message, Permission
from tests.fakes.smtp import SmtpSink
from tests.fakes.webhooks import BlackHole, WebhookReceiver
from tests.helpers import LOAD_SLACK, Stack, Tenant, eventually, running_stack
from tests.mail_samples import out_of_office, plain_mail
from worker.inbound_smtp import InboundSmtpServer


@dataclass
class Hooks:
    stack: Stack
    sink: SmtpSink

    async def endpoint(self, tenant: Tenant, url: str, types=("*",), **fields) -> dict:
        body = {"url": url, "event_types": list(types), **fields}
        answer = await self.stack.http.post(
            "/v1/webhook-endpoints", json=body, headers=tenant.headers
        )
        assert answer.status_code == 201, answer.text
        return answer.json()

    async def feed(self, tenant: Tenant, after: str = "", **params) -> dict:
        answer = await self.stack.http.get(
            "/v1/events", params={"after": after, **params}, headers=tenant.headers
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def deliveries(self, tenant: Tenant, endpoint_id: str) -> list[dict]:
        answer = await self.stack.http.get(
            f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=tenant.headers
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def endpoint_state(self, tenant: Tenant, endpoint_id: str) -> dict:
        answer = await self.stack.http.get(
            f"/v1/webhook-endpoints/{endpoint_id}", headers=tenant.headers
        )
        return answer.json()


@asynccontextmanager
async def hooks(temporal_client, engine, tmp_path, **overrides) -> AsyncIterator[Hooks]:
    settings = {"webhook_retry_schedule": "1,1,1,1", "relay_interval": 0.2, **overrides}
    with SmtpSink() as sink:
        async with running_stack(
            temporal_client,
            engine,
            tmp_path,
            platform_transport="smtp",
            smtp_relay_url=f"smtp://127.0.0.1:{sink.port}",
            **settings,
        ) as stack:
            yield Hooks(stack, sink)


async def _async(value):
    return value()


async def _received(receiver: WebhookReceiver, type: str, count: int = 1, timeout=30) -> list:
    async def found() -> list:
        return receiver.events(type)

    return await eventually(found, lambda f: len(f) >= count, timeout=timeout, what=type)


def _verified(receiver: WebhookReceiver, secret: str) -> list[dict]:
    """Every delivery, verified as the receiving platform would."""
    verifier = Webhook(secret)
    return [verifier.verify(d.body, d.headers) for d in receiver.received]


async def test_a_send_reaches_a_verified_endpoint_and_the_feed_without_personal_data(
    temporal_client, engine, tmp_path
):
    async with hooks(temporal_client, engine, tmp_path) as h:
        tenant = h.stack.tenant()
        with WebhookReceiver() as plain, WebhookReceiver() as personal:
            created = await h.endpoint(tenant, plain.url, ["message.sent"])
            opted = await h.endpoint(
                tenant, personal.url, ["message.sent"], include_personal_data=True
            )
            candidate = await h.stack.candidate(tenant, name="Grace Hopper")
            sent = await h.stack.send_and_settle(tenant, subject="Assessment day", text="Secret")
            await _received(plain, "message.sent")
            await _received(personal, "message.sent")
            feed = await h.feed(tenant, types="message.sent")
            again = await h.feed(tenant, after=feed["next"], types="message.sent")
            listed = await h.stack.http.get("/v1/webhook-endpoints", headers=tenant.headers)
            attempts = await h.deliveries(tenant, created["id"])
            metrics = (await h.stack.http.get("/metrics")).text
    assert created["secret"].startswith("whsec_") and opted["secret"] != created["secret"]
    assert all(e["secret"] is None for e in listed.json())  # shown once
    [event] = _verified(plain, created["secret"])
    assert event["type"] == "message.sent" and event["company_id"] == str(tenant.company.id)
    assert event["data"]["message_id"] == sent["id"] and event["data"]["status"] == "sent"
    text = plain.received[0].body.decode()
    for private in (candidate["email"], "Grace", "Assessment day", "Secret"):
        assert private not in text
    [rich] = _verified(personal, opted["secret"])
    assert rich["data"]["subject"] == "Assessment day"
    assert rich["data"]["candidate_name"] == "Grace Hopper"
    assert "Secret" not in personal.received[0].body.decode()  # never a body
    assert plain.received[0].headers["webhook-id"] == event["id"]
    assert [e["id"] for e in feed["data"]] == [event["id"]]
    assert "Grace" not in json.dumps(feed)
    assert again["data"] == [] and again["next"] == feed["next"]
    assert attempts[0]["outcome"] == "delivered" and attempts[0]["status_code"] == 200
    assert 'recruitmail_webhook_deliveries_total{outcome="delivered"}' in metrics
    assert "recruitmail_webhook_delivery_duration_seconds_bucket" in metrics
    # The gauges cover every company in this worker's database, where other tests leave
    # endpoints behind on purpose: their values are tested on a database of their own below.
    assert "recruitmail_webhook_oldest_undelivered_seconds " in metrics
    assert "recruitmail_webhook_endpoints_behind " in metrics
    assert created["id"] not in metrics and str(tenant.company.id) not in metrics


def test_the_undelivered_gauges_count_enabled_endpoints_only(tmp_path):
    """The oldest undelivered event and the endpoints over an hour behind, on a database of
    its own: a disabled endpoint's backlog and a delivered event do not count."""
    from datetime import UTC, datetime

    from api.metrics import ProductCollector
    from core.db import make_engine
    from core.migrate import upgrade
    from core.models import Company, WebhookDelivery, WebhookEndpoint

    url = f"sqlite:///{tmp_path / 'gauges.db'}"
    upgrade(url)
    engine = make_engine(url)

    def gauges() -> dict[str, float]:
        return {
            metric.name: metric.samples[0].value
            for metric in ProductCollector(engine).collect()
            if metric.name.startswith("recruitmail_webhook_")
            and metric.name.endswith(("_seconds", "_behind"))
            and metric.type == "gauge"
        }

    now = datetime.now(UTC)
    with Session(engine) as session:
        company = Company(name="Acme", slug="acme")
        session.add(company)
        session.flush()

        def endpoint(disabled: bool) -> WebhookEndpoint:
            row = WebhookEndpoint(
                company_id=company.id,
                url="https://hooks.example/x",
                secret_blob=b"x",
                disabled=disabled,
            )
            session.add(row)
            return row

        def waiting(row: WebhookEndpoint, age: timedelta, status: str = "pending") -> None:
            event = Event(company_id=company.id, type="message.sent", created_at=now - age)
            session.add(event)
            session.flush()
            session.add(
                WebhookDelivery(
                    endpoint_id=row.id, event_id=event.id, company_id=company.id, status=status
                )
            )

        live, dead = endpoint(False), endpoint(True)
        session.flush()
        waiting(dead, timedelta(days=3))
        waiting(live, timedelta(days=5), status="delivered")
        session.commit()
        assert gauges() == {
            "recruitmail_webhook_oldest_undelivered_seconds": 0.0,
            "recruitmail_webhook_endpoints_behind": 0.0,
        }
        waiting(live, timedelta(minutes=10))
        session.commit()
        quiet = gauges()
        waiting(live, timedelta(hours=2))
        session.commit()
        late = gauges()
    engine.dispose()
    assert 600 <= quiet["recruitmail_webhook_oldest_undelivered_seconds"] < 660
    assert quiet["recruitmail_webhook_endpoints_behind"] == 0.0
    assert 7200 <= late["recruitmail_webhook_oldest_undelivered_seconds"] < 7260
    assert late["recruitmail_webhook_endpoints_behind"] == 1.0


async def test_a_receiver_down_then_up_gets_the_event_once_with_the_same_id(
    temporal_client, engine, tmp_path
):
    async with hooks(temporal_client, engine, tmp_path) as h:
        tenant = h.stack.tenant()
        receiver = WebhookReceiver()  # not started: the port refuses connections
        created = await h.endpoint(tenant, receiver.url, ["message.sent"])
        await h.stack.send_and_settle(tenant)
        failed = await eventually(
            lambda: h.deliveries(tenant, created["id"]),
            lambda attempts: len(attempts) >= 2,
            what="two failed attempts",
        )
        receiver.start()
        try:
            await _received(receiver, "message.sent")
            attempts = await eventually(
                lambda: h.deliveries(tenant, created["id"]),
                lambda found: found and found[0]["outcome"] == "delivered",
                what="the delivery",
            )
        finally:
            receiver.stop()
    assert all(a["outcome"] == "failed" for a in failed)
    assert "could not connect" in failed[0]["error"]
    [delivered] = _verified(receiver, created["secret"])
    assert receiver.received[0].headers["webhook-id"] == delivered["id"]
    assert {a["event_id"] for a in attempts} == {delivered["id"]}  # every attempt, one event
    assert len(receiver.received) == 1


async def test_410_disables_the_endpoint_says_so_in_the_feed_and_tells_the_admins(
    temporal_client, engine, tmp_path
):
    async with hooks(temporal_client, engine, tmp_path) as h:
        tenant = h.stack.tenant()
        with WebhookReceiver(script=[410]) as gone, WebhookReceiver() as other:
            created = await h.endpoint(tenant, gone.url, ["*"])
            watcher = await h.endpoint(tenant, other.url, ["webhook_endpoint.disabled"])
            await h.stack.http.post(
                f"/v1/webhook-endpoints/{created['id']}/test", headers=tenant.headers
            )
            disabled = await eventually(
                lambda: h.endpoint_state(tenant, created["id"]),
                lambda e: e["disabled"],
                what="the endpoint disabled",
            )
            told = await _received(other, "webhook_endpoint.disabled")
            mail = await h.sink.wait_for(1)
            feed = await h.feed(tenant, types="webhook_endpoint.disabled")
    assert "410" in disabled["disabled_reason"]
    assert told[0]["data"]["endpoint_id"] == created["id"]
    assert _verified(other, watcher["secret"])
    assert feed["data"][0]["data"]["endpoint_id"] == created["id"]
    [notice] = mail
    assert notice.rcpt_tos == [f"admin@{tenant.company.slug}.example.com"]
    assert "webhook endpoint was disabled" in str(notice.message["Subject"]).lower()
    assert len(gone.received) == 1


async def test_a_rotated_secret_signs_beside_the_old_ones_for_a_day(
    temporal_client, engine, tmp_path
):
    """Rotated twice within the day: the first secret still signs until its own day is out."""
    async with hooks(temporal_client, engine, tmp_path) as h:
        tenant = h.stack.tenant()
        with WebhookReceiver() as receiver:
            created = await h.endpoint(tenant, receiver.url, ["webhook.test"])
            rotations = [
                await h.stack.http.post(
                    f"/v1/webhook-endpoints/{created['id']}/rotate-secret", headers=tenant.headers
                )
                for _ in range(2)
            ]
            await h.stack.http.post(
                f"/v1/webhook-endpoints/{created['id']}/test", headers=tenant.headers
            )
            await _received(receiver, "webhook.test")
    first, second = (r.json()["secret"] for r in rotations)
    assert first.startswith("whsec_") and len({created["secret"], first, second}) == 3
    delivery = receiver.received[0]
    assert len(delivery.headers["webhook-signature"].split(" ")) == 3
    for secret in (created["secret"], first, second):
        assert Webhook(secret).verify(delivery.body, delivery.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(delivery.body, delivery.headers)


async def test_one_companys_dead_endpoints_do_not_delay_another(temporal_client, engine, tmp_path):
    """Company B's 64 endpoints accept and never answer; company A's delivery starts at once,
    within its own fair share of the worker's delivery rounds."""
    async with hooks(temporal_client, engine, tmp_path, webhook_max_endpoints=64) as h:
        a, b = h.stack.tenant("A"), h.stack.tenant("B")
        with BlackHole() as hole, WebhookReceiver() as receiver:
            dead = [await h.endpoint(b, hole.url, ["webhook.test"]) for _ in range(64)]
            for endpoint in dead:
                await h.stack.http.post(
                    f"/v1/webhook-endpoints/{endpoint['id']}/test", headers=b.headers
                )
            await eventually(lambda: _async(lambda: hole.connections), lambda n: n >= 4)
            mine = await h.endpoint(a, receiver.url, ["webhook.test"])
            started = asyncio.get_running_loop().time()
            await h.stack.http.post(f"/v1/webhook-endpoints/{mine['id']}/test", headers=a.headers)
            await _received(receiver, "webhook.test", timeout=20)
            took = asyncio.get_running_loop().time() - started
            at_once = hole.connections
    assert took < 1.0 * LOAD_SLACK, f"company A's delivery took {took:.2f} s"
    # B never held more than its share: 4 rounds of 8 requests at once.
    assert at_once <= 4 * 8


async def test_endpoints_per_company_are_capped_and_descriptions_are_plain_text(
    temporal_client, engine, tmp_path
):
    async with hooks(temporal_client, engine, tmp_path, webhook_max_endpoints=2) as h:
        tenant = h.stack.tenant()
        for _ in range(2):
            await h.endpoint(tenant, "http://127.0.0.1:9/hooks", ["*"])
        over = await h.stack.http.post(
            "/v1/webhook-endpoints",
            json={"url": "http://127.0.0.1:9/hooks", "event_types": ["*"]},
            headers=tenant.headers,
        )
        other = await h.stack.http.post(
            "/v1/webhook-endpoints",
            json={"url": "http://127.0.0.1:9/hooks", "event_types": ["*"]},
            headers=h.stack.tenant().headers,
        )
        controls = [
            await h.stack.http.post(
                "/v1/webhook-endpoints",
                json={"url": "http://127.0.0.1:9/h", "event_types": ["*"], "description": text},
                headers=h.stack.tenant().headers,
            )
            for text in ("a\x00b", "a\x1bb", "a\x85b", "a\nb")
        ]
    assert (
        over.status_code == 409 and "RECRUITMAIL_WEBHOOK_MAX_ENDPOINTS=2" in over.json()["detail"]
    )
    assert other.status_code == 201  # another company's count
    assert all(c.status_code == 422 and "description" in c.json()["detail"] for c in controls)


async def test_a_redirect_is_not_followed(temporal_client, engine, tmp_path):
    async with hooks(temporal_client, engine, tmp_path) as h:
        tenant = h.stack.tenant()
        with WebhookReceiver() as target:
            moved = (307, {"Location": target.url})
            with WebhookReceiver(script=[moved] * 10) as redirecting:
                created = await h.endpoint(tenant, redirecting.url, ["webhook.test"])
                await h.stack.http.post(
                    f"/v1/webhook-endpoints/{created['id']}/test", headers=tenant.headers
                )
                attempts = await eventually(
                    lambda: h.deliveries(tenant, created["id"]), bool, what="an attempt"
                )
                deleted = await h.stack.http.delete(
                    f"/v1/webhook-endpoints/{created['id']}", headers=tenant.headers
                )
                # Its run ends: the endpoint is gone.
                await h.stack.client.get_workflow_handle(created["workflow_id"]).result()
    assert deleted.status_code == 204
    assert target.received == []
    assert attempts[0]["outcome"] == "failed" and attempts[0]["status_code"] == 307
    assert "redirects are not followed" in attempts[0]["error"]


class Rebinding:
    """Answers a public address first (the check when the endpoint is created), then
    loopback (the connection)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        if host != "hooks.rebind.example":
            return await netguard.system_resolver(host, port)
        return ["93.184.216.34"] if self.calls == 1 else ["127.0.0.1"]


async def test_internal_urls_are_refused_even_by_dns_rebinding(temporal_client, engine, tmp_path):
    async with hooks(temporal_client, engine, tmp_path, allow_private_hosts=False) as h:
        tenant = h.stack.tenant()
        with WebhookReceiver() as loopback:
            direct = await h.stack.http.post(
                "/v1/webhook-endpoints",
                json={"url": loopback.url, "event_types": ["*"]},
                headers=tenant.headers,
            )
            metadata = await h.stack.http.post(
                "/v1/webhook-endpoints",
                json={"url": "http://169.254.169.254/latest", "event_types": ["*"]},
                headers=tenant.headers,
            )
            resolver = Rebinding()
            previous = netguard.use_resolver(resolver)
            try:
                url = f"http://hooks.rebind.example:{loopback.port}/hooks"
                created = await h.endpoint(tenant, url, ["webhook.test"])
                await h.stack.http.post(
                    f"/v1/webhook-endpoints/{created['id']}/test", headers=tenant.headers
                )
                attempts = await eventually(
                    lambda: h.deliveries(tenant, created["id"]), bool, what="an attempt"
                )
            finally:
                netguard.use_resolver(previous)
    for refused in (direct, metadata):
        assert refused.status_code == 422
        assert "internal address" in refused.json()["detail"]
    assert attempts[0]["outcome"] == "failed"
    assert "internal address" in attempts[0]["error"]
    assert loopback.received == []


async def test_tenants_never_meet_on_the_new_routes(temporal_client, engine, tmp_path):
    async with hooks(temporal_client, engine, tmp_path) as h:
        a, b = h.stack.tenant("Acme"), h.stack.tenant("Rival")
        with WebhookReceiver() as receiver:
            created = await h.endpoint(a, receiver.url, ["webhook.test"])
            await h.stack.http.post(
                f"/v1/webhook-endpoints/{created['id']}/test", headers=a.headers
            )
            [event] = await _received(receiver, "webhook.test")
            base = f"/v1/webhook-endpoints/{created['id']}"
            http = h.stack.http
            answers = [
                await http.get(base, headers=b.headers),
                await http.patch(base, json={"description": "x"}, headers=b.headers),
                await http.post(f"{base}/rotate-secret", headers=b.headers),
                await http.post(f"{base}/test", headers=b.headers),
                await http.get(f"{base}/deliveries", headers=b.headers),
                await http.post(f"/v1/events/{event['id']}/redeliver", headers=b.headers),
                await http.delete(base, headers=b.headers),
            ]
            b_list = await http.get("/v1/webhook-endpoints", headers=b.headers)
            await h.stack.http.post(
                "/v1/privacy", json={"notification_names_candidate": True}, headers=b.headers
            )
            put = await http.put(
                "/v1/privacy", json={"notification_names_candidate": True}, headers=b.headers
            )
            a_privacy = await http.get("/v1/privacy", headers=a.headers)
            b_feed = await h.feed(b)
            a_feed = await h.feed(a)
            still = await http.get(base, headers=a.headers)
    assert [x.status_code for x in answers] == [404] * 7
    assert b_list.json() == []
    assert put.json()["notification_names_candidate"] is True
    assert a_privacy.json()["notification_names_candidate"] is False
    assert b_feed["data"] == [] and str(a.company.id) not in json.dumps(b_feed)
    assert a_feed["data"] == []  # a test event goes to its endpoint alone, not the feed
    assert still.status_code == 200


async def test_reply_notifications_coalesce_name_the_candidate_only_when_allowed(
    temporal_client, engine, tmp_path
):
    overrides = {"reply_notifications": True, "notify_coalesce": 3, "inbound_smtp_port": 0}
    async with hooks(temporal_client, engine, tmp_path, **overrides) as h:
        tenant = h.stack.tenant()
        rita = h.stack.user(tenant, [Permission.MESSAGING], name="Rita Recruiter")
        rita_email = (await h.stack.http.get("/v1/me", headers=rita)).json()["email"]
        server = InboundSmtpServer(h.stack.settings, h.stack.engine, h.stack.client)
        port = await server.start()
        hosted = h.stack.settings.hosted_address(tenant.company.slug)
        try:
            grace = await h.stack.candidate(tenant, name="Grace Hopper")
            sent = await _send_as(h, rita, grace)
            # A reply: an email at once. Two more within the 3 s window: one email, at its end.
            await _deliver(port, _reply(grace["email"], hosted, sent, "Re: Interview 0"))
            await _notices(h, 1)
            for n in (1, 2):
                await _deliver(port, _reply(grace["email"], hosted, sent, f"Re: Interview {n}"))
            burst = await _notices(h, 2)
            # An automatic reply: no email. Then the company lets emails name candidates.
            await _deliver(
                port,
                out_of_office(
                    sender=grace["email"], to=hosted, in_reply_to=sent["message_id_header"]
                ),
            )
            await h.stack.http.put(
                "/v1/privacy", json={"notification_names_candidate": True},
                headers=tenant.headers,
            )  # fmt: skip
            await _deliver(port, _reply(grace["email"], hosted, sent, "Re: Interview"))
            named = await _notices(h, 3)
            # Mail that matches no candidate goes to the admins; Rita turns hers off.
            await h.stack.http.patch("/v1/me", json={"notify_replies": False}, headers=rita)
            await _deliver(port, _reply("stranger@else.example", hosted, None, "Hello"))
            unassigned = await _notices(h, 4)
            await _deliver(port, _reply(grace["email"], hosted, sent, "Re: once more"))
            # Its run ended without an email: Rita is the one to tell, and she turned it off.
            await _handed_over(h, "Re: once more")
            run = f"reply-notifications-{tenant.company.id}-{grace['id']}"
            await h.stack.client.get_workflow_handle(run).result()
            final = await _notices(h, 4)
        finally:
            await server.stop()
    first, second = burst
    assert (first.rcpt_tos, second.rcpt_tos) == ([rita_email], [rita_email])
    assert first.mail_from == hosted
    assert str(first.message["Subject"]) == "New reply from a candidate"
    assert str(second.message["Subject"]) == "2 new replies from a candidate"
    for notice in burst:
        text = notice.raw.decode()
        assert "Grace" not in text and grace["email"] not in text and "Interview" not in text
    assert str(named[2].message["Subject"]) == "New reply from Grace Hopper"
    assert "Re: Interview" in named[2].message.get_content()
    assert unassigned[3].rcpt_tos == [f"admin@{tenant.company.slug}.example.com"]
    assert "Unassigned" in str(unassigned[3].message["Subject"])
    assert len(final) == 4  # Rita turned hers off: nothing more


def _reply(sender: str, hosted: str, sent: dict | None, subject: str) -> bytes:
    thread = f"In-Reply-To: {sent['message_id_header']}\n" if sent else ""
    return plain_mail(
        sender=sender, to=hosted, subject=subject, message_id=f"<{uuid.uuid4().hex}@x.example>",
        extra_headers=thread, body="Thanks, Tuesday works.",
    )  # fmt: skip


async def _send_as(h: Hooks, headers: dict, candidate: dict) -> dict:
    queued = await h.stack.http.post(
        f"/v1/candidates/{candidate['id']}/messages",
        json={"subject": "Interview", "text": "Hello Grace, Tuesday?"},
        headers=headers,
    )
    assert queued.status_code == 202, queued.text

    async def message() -> dict:
        return (
            await h.stack.http.get(f"/v1/messages/{queued.json()['id']}", headers=headers)
        ).json()

    return await eventually(message, lambda m: m["status"] == "sent", what="the send")


async def _handed_over(h: Hooks, subject: str) -> None:
    """Wait until the relay handed the reply with this subject to its notifier run."""

    async def handed() -> bool:
        with Session(h.stack.engine) as session:
            message = session.exec(select(Message).where(Message.subject == subject)).first()
            if message is None:
                return False
            seq = next(
                (
                    e.seq
                    for e in session.exec(select(Event).where(Event.type == "message.received"))
                    if e.data.get("message_id") == str(message.id)
                ),
                None,
            )
            consumer = session.get(EventConsumer, "reply-notifications")
            return seq is not None and consumer is not None and consumer.last_seq >= seq

    await eventually(handed, what=f"the reply {subject!r} handed to its notifier")


async def _deliver(port: int, raw: bytes) -> None:
    def send() -> None:
        import smtplib

        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            message = message_from_bytes(raw)
            smtp.sendmail("someone@outside.example", [message["To"]], raw)

    await asyncio.to_thread(send)


async def _notices(h: Hooks, count: int, timeout: float = 30) -> list:
    """The notification emails the platform relay caught (the sends themselves go elsewhere)."""

    async def found() -> list:
        return [r for r in h.sink.received if r.message["Auto-Submitted"]]

    return await eventually(found, lambda n: len(n) >= count, timeout=timeout, what="notices")


async def test_a_reply_notification_run_that_never_falls_quiet_continues_as_new(
    temporal_client, engine, tmp_path
):
    """Replies that keep coming within every window (an Unassigned inbox under a flood): the
    run starts afresh before its history, and the signals it takes (10,000 at most per run),
    run out. Signalled as the relay does (starting a run when none is open)."""
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.common import WorkflowIDConflictPolicy

    from contracts.notify import REPLY, ReplyNotificationsInput
    from workflows.notify import ReplyNotificationsWorkflow

    async with running_stack(temporal_client, engine, tmp_path) as stack:
        tenant = stack.tenant()
        workflow_id = f"reply-notifications-test-{uuid.uuid4().hex[:8]}"
        # A low limit stands for the real one (2,000 events): the same path, in seconds.
        arg = ReplyNotificationsInput(
            str(tenant.company.id), None, timedelta(seconds=2), history_limit=150
        )
        for _ in range(300):
            await temporal_client.start_workflow(
                ReplyNotificationsWorkflow.run,
                arg,
                id=workflow_id,
                task_queue=stack.settings.task_queue,
                start_signal=REPLY,
                start_signal_args=[str(uuid.uuid4())],
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )

        async def runs() -> list:
            query = f"WorkflowId = '{workflow_id}'"
            return [e async for e in temporal_client.list_workflows(query)]

        found = await eventually(
            runs,
            lambda r: any(e.status == WorkflowExecutionStatus.CONTINUED_AS_NEW for e in r),
            timeout=60,
        )
        longest = max(e.history_length for e in found)
    assert longest < 10_000  # no run came near the signal limit
