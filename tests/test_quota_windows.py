"""Quota windows as providers count them (core/throttle.py): messages and recipients over a
rolling 24 hours, on the database the suite runs on, with no counter reset at midnight."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlmodel import Session

from core import throttle
from core.models import MailboxThrottle, ThrottleSend
from core.throttle import WINDOW, Rate
from tests.helpers import eventually
from tests.test_bulk import start_bulk, wait_job
from tests.test_inbound import inbound_stack


def _reset_platform_throttle(engine) -> None:
    """The platform's throttle is shared by the suite: a test that fills it empties it."""
    with Session(engine) as session:
        session.exec(delete(MailboxThrottle).where(MailboxThrottle.key == "platform"))
        session.exec(delete(ThrottleSend).where(ThrottleSend.key == "platform"))
        session.commit()


def _key(engine) -> str:
    key = f"test:{uuid.uuid4()}"
    throttle.ensure_row(engine, key)
    return key


def test_the_window_rolls_past_midnight(engine):
    key = _key(engine)
    rate = Rate(interval=0, daily_recipients=5)
    first = datetime(2026, 12, 7, 23, 59, tzinfo=UTC).timestamp()
    before_midnight = [throttle.reserve(engine, key, rate, first + i) for i in range(3)]
    after = first + 120  # 00:01: a calendar day would start again here
    fourth = throttle.reserve(engine, key, rate, after)
    fifth = throttle.reserve(engine, key, rate, after + 1)
    sixth = throttle.reserve(engine, key, rate, after + 2)
    assert [s.at for s in before_midnight] == [first, first + 1, first + 2]
    assert not any(s.quota for s in before_midnight)
    assert (fourth.at, fifth.at) == (after, after + 1) and not fifth.quota
    assert sixth.quota and sixth.at == first + WINDOW  # when the first send ages out
    # The next one waits for the second send, not for another day.
    seventh = throttle.reserve(engine, key, rate, after + 3)
    assert seventh.quota and seventh.at == first + 1 + WINDOW


def test_a_message_counts_each_recipient(engine):
    key = _key(engine)
    rate = Rate(interval=0, daily_recipients=5)
    now = 1_800_000_000.0
    to_three = throttle.reserve(engine, key, rate, now, recipients=3)
    to_two = throttle.reserve(engine, key, rate, now + 1, recipients=2)
    to_three_more = throttle.reserve(engine, key, rate, now + 2, recipients=3)
    assert not to_three.quota and not to_two.quota
    # 5 of 5 spent: 3 more fit once the first message's 3 recipients age out.
    assert to_three_more.quota and to_three_more.at == now + WINDOW


def test_messages_and_recipients_both_count_with_the_per_minute_rate(engine):
    key = _key(engine)
    rate = Rate(interval=2.0, daily_cap=3, daily_recipients=100)
    now = 1_800_100_000.0
    slots = [throttle.reserve(engine, key, rate, now) for _ in range(4)]
    assert [s.at for s in slots[:3]] == [now, now + 2, now + 4]
    assert slots[3].quota and slots[3].at == now + WINDOW
    # The per-minute spacing goes on from the quota's slot.
    assert throttle.reserve(engine, key, rate, now).at == now + 2 + WINDOW


def test_concurrent_reservations_never_exceed_the_quota(engine):
    key = _key(engine)
    rate = Rate(interval=0, daily_cap=5)
    now = 1_800_200_000.0
    with ThreadPoolExecutor(max_workers=4) as pool:
        slots = list(pool.map(lambda _: throttle.reserve(engine, key, rate, now), range(12)))
    times = sorted(s.at for s in slots)
    assert times == [now] * 5 + [now + WINDOW] * 5 + [now + 2 * WINDOW] * 2
    # No rolling 24 hours holds more than 5.
    assert all(sum(1 for t in times if at - WINDOW < t <= at) <= 5 for at in times)


async def test_a_bulk_send_waits_for_the_quota_and_says_until_when(
    temporal_client, engine, tmp_path
):
    try:
        async with inbound_stack(
            temporal_client, engine, tmp_path, bulk_daily_recipients_platform=2
        ) as inbound:
            stack, http = inbound.stack, inbound.stack.http
            tenant = stack.tenant()
            ids = [(await stack.candidate(tenant))["id"] for _ in range(3)]
            job = await start_bulk(stack, tenant, ids)

            waiting = await eventually(
                lambda: http.get(f"/v1/bulk-messages/{job['id']}", headers=tenant.headers),
                lambda r: r.json()["waiting_for_quota_until"] is not None,
                what="the job waiting for the quota",
            )
            shown = waiting.json()
            delivered = len(inbound.sink.received)
            cancelled = await http.post(
                f"/v1/bulk-messages/{job['id']}/cancel", headers=tenant.headers
            )
            await wait_job(http, tenant, job["id"], statuses=("cancelled",))
    finally:
        _reset_platform_throttle(engine)

    assert delivered == 2 and shown["counts"]["sent"] == 2
    until = datetime.fromisoformat(shown["waiting_for_quota_until"])
    hours = (until - datetime.now(UTC)).total_seconds() / 3600
    assert 23.5 < hours <= 24.0
    assert "24-hour quota" in shown["waiting_reason"]
    assert cancelled.status_code in (200, 202)


def test_quota_refusals_are_deferrals_not_failures():
    import aiosmtplib

    from core.errors import QuotaExceeded, RecipientRefused
    from providers.smtp import classify_smtp_error

    server = "smtp.gmail.com:587"
    quota = [
        aiosmtplib.SMTPDataError(550, "5.4.5 Daily user sending quota exceeded."),
        aiosmtplib.SMTPSenderRefused(550, "5.4.5 Daily user sending limit exceeded", "a@b.c"),
        aiosmtplib.SMTPDataError(
            554,
            "5.2.2 STOREDRV.Submission.Exception:SubmissionQuotaExceeded"
            "Exception; Failed to process message due to a permanent "
            "exception with message Submission quota exceeded",
        ),
        aiosmtplib.SMTPRecipientRefused(
            452, "4.5.3 Your message exceeded the recipient rate limit", "c@d.e"
        ),
    ]
    for error in quota:
        found = classify_smtp_error(error, server)
        assert isinstance(found, QuotaExceeded), (error, found)
        assert found.retry_after is not None and found.retry_after.total_seconds() == 3600
        assert "waits for it to reopen" in str(found)
    # The recipient's mailbox over quota is the recipient's problem, not the sender's quota.
    full = classify_smtp_error(
        aiosmtplib.SMTPRecipientRefused(552, "5.2.2 The email account is over quota", "c@d.e"),
        server,
    )
    assert isinstance(full, RecipientRefused)


def test_a_throttled_mail_api_defers_the_mailbox_with_the_wait_it_asked_for():
    """Graph's 429 (MailboxConcurrency, ApplicationThrottled) and Gmail's rate reasons are
    QuotaExceeded, with Retry-After honoured; other refusals stay what they were."""
    import httpx

    from core.errors import PermanentMailError, QuotaExceeded, TransientMailError
    from providers.http import THROTTLE_RETRY, mail_api_answer

    def answer(status: int, body: dict, **headers: str) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    graph = {
        "error": {
            "code": "ApplicationThrottled",
            "message": "Application is over its MailboxConcurrency limit.",
        }
    }
    gmail = {
        "error": {
            "code": 403,
            "message": "Daily Limit Exceeded",
            "errors": [{"reason": "dailyLimitExceeded", "domain": "usageLimits"}],
        }
    }
    cases = [
        (answer(429, graph, **{"Retry-After": "7"}), 7),
        (answer(429, {"error": {"code": 429, "message": "Rate"}}), THROTTLE_RETRY.seconds),
        (answer(403, gmail), THROTTLE_RETRY.seconds),
    ]
    for response, seconds in cases:
        try:
            mail_api_answer(response, "Graph", "jobs@acme.example")
        except QuotaExceeded as err:
            assert err.retry_after is not None and err.retry_after.total_seconds() == seconds
            assert "jobs@acme.example" in str(err) and "waits" in str(err)
        else:
            raise AssertionError(f"{response.status_code} was not a deferral")
    # A 403 that is not about rates is the mailbox's refusal; a 503 a plain transient error.
    denied = {"error": {"code": "ErrorSendAsDenied", "message": "not allowed"}}
    for response, kind in [
        (answer(403, denied), PermanentMailError),
        (answer(503, {}), TransientMailError),
    ]:
        try:
            mail_api_answer(response, "Graph", "jobs@acme.example")
        except QuotaExceeded:
            raise AssertionError(f"{response.status_code} taken for a quota") from None
        except kind:
            pass


async def test_a_quota_refusal_holds_the_bulk_send_without_failing_or_suppressing(
    temporal_client, engine, tmp_path
):
    try:
        async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
            stack, http = inbound.stack, inbound.stack.http
            inbound.sink.handler.data_script = ["550 5.4.5 Daily user sending quota exceeded."]
            tenant = stack.tenant()
            candidate = await stack.candidate(tenant)
            job = await start_bulk(stack, tenant, [candidate["id"]])
            waiting = await eventually(
                lambda: http.get(f"/v1/bulk-messages/{job['id']}", headers=tenant.headers),
                lambda r: r.json()["waiting_for_quota_until"] is not None,
                what="the job waiting for the mailbox's quota",
            )
            [message] = (
                await http.get(f"/v1/candidates/{candidate['id']}/messages", headers=tenant.headers)
            ).json()
            listed = (await http.get("/v1/suppressions", headers=tenant.headers)).json()
            await http.post(f"/v1/bulk-messages/{job['id']}/cancel", headers=tenant.headers)
            await wait_job(http, tenant, job["id"], statuses=("cancelled",))
    finally:
        _reset_platform_throttle(engine)

    shown = waiting.json()
    until = datetime.fromisoformat(shown["waiting_for_quota_until"])
    minutes = (until - datetime.now(UTC)).total_seconds() / 60
    assert 55 < minutes <= 60
    assert message["status"] in ("queued", "sending") and listed == []
    assert inbound.sink.handler.data_attempts == 1 and inbound.sink.received == []


async def test_single_sends_count_in_the_window_and_wait_without_failing(
    temporal_client, engine, tmp_path
):
    try:
        async with inbound_stack(
            temporal_client, engine, tmp_path, bulk_daily_recipients_platform=1
        ) as inbound:
            stack = inbound.stack
            tenant = stack.tenant()
            first = await stack.candidate(tenant)
            second = await stack.candidate(tenant)
            sent = await stack.send(tenant, first["id"])
            sent = await stack.wait_for_status(tenant, sent["id"], {"sent", "failed"})
            held = await stack.send(tenant, second["id"])
            held = await eventually(
                lambda: stack.http.get(f"/v1/messages/{held['id']}", headers=tenant.headers),
                lambda r: r.json()["error"] is not None,
                what="the second send waiting for the quota",
            )
            shown = held.json()
            delivered = len(inbound.sink.received)
    finally:
        _reset_platform_throttle(engine)

    assert sent["status"] == "sent" and delivered == 1
    assert shown["status"] == "sending"  # waiting, not failed
    assert "24-hour quota is spent" in shown["error"] and "window reopens" in shown["error"]


async def test_a_connection_sets_its_own_quota(temporal_client, engine, tmp_path):
    from core.models import Connection

    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack, http = inbound.stack, inbound.stack.http
        tenant, other = stack.tenant(), stack.tenant(name="Other")
        with Session(engine, expire_on_commit=False) as session:
            row = Connection(
                company_id=tenant.company.id,
                kind="google",
                custom_address="jobs@consumer.example",
                status="active",
            )
            session.add(row)
            session.commit()
        url = f"/v1/connections/{row.id}"
        default = (await http.get(url, headers=tenant.headers)).json()["quota"]
        lowered = await http.put(
            f"{url}/quota",
            json={"messages_per_day": 500, "recipients_per_day": 500},
            headers=tenant.headers,
        )
        refused = await http.put(
            f"{url}/quota", json={"messages_per_day": -1}, headers=tenant.headers
        )
        foreign = await http.put(
            f"{url}/quota", json={"messages_per_day": 1}, headers=other.headers
        )
        back = await http.put(f"{url}/quota", json={}, headers=tenant.headers)

    assert default == {
        "messages_per_day": 2000,
        "recipients_per_day": 10000,
        "per_minute": 0.0,
        "overridden": False,
    }
    assert lowered.status_code == 200
    assert lowered.json()["quota"] == {
        "messages_per_day": 500,
        "recipients_per_day": 500,
        "per_minute": 0.0,
        "overridden": True,
    }
    assert refused.status_code == 422 and foreign.status_code == 404
    assert back.json()["quota"]["overridden"] is False


async def test_a_quota_refusal_is_sent_once_the_window_reopens(
    temporal_client, engine, tmp_path, monkeypatch
):
    from datetime import timedelta

    import core.errors

    monkeypatch.setattr(core.errors, "QUOTA_RETRY", timedelta(seconds=2))  # an hour, really
    refusal = "550 5.4.5 Daily user sending quota exceeded."
    try:
        async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
            stack, http = inbound.stack, inbound.stack.http
            tenant = stack.tenant()
            one, two = await stack.candidate(tenant), await stack.candidate(tenant)
            inbound.sink.handler.data_script = [refusal]
            job = await start_bulk(stack, tenant, [one["id"]])
            job = await wait_job(http, tenant, job["id"])
            inbound.sink.handler.data_script = [refusal]
            single = await stack.send(tenant, two["id"])
            single = await stack.wait_for_status(tenant, single["id"], {"sent", "failed"})
            listed = (await http.get("/v1/suppressions", headers=tenant.headers)).json()
    finally:
        _reset_platform_throttle(engine)

    assert job["counts"]["sent"] == 1 and job["counts"]["failed"] == 0
    assert single["status"] == "sent" and single["attempts"] >= 2
    assert inbound.sink.handler.data_attempts == 4  # each refused once, then taken
    assert len(inbound.sink.received) == 2 and listed == []
