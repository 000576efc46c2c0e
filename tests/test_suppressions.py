"""The suppression list: a hard bounce over SMTP puts the address on it, a single send to it
fails at once with the reason, a bulk send skips it, a release lets mail go again; soft
bounces count within 7 days; an erased candidate stays suppressed by the hash alone."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from core.deliverability import suppression
from core.events import EventType
from core.models import AuditEvent, Event, Permission, Suppression, utcnow
from core.statuses import SuppressionReason
from tests import mail_samples as samples
from tests.helpers import eventually, new_company
from tests.test_bulk import start_bulk, wait_job
from tests.test_inbound import inbound_stack


async def test_a_hard_bounce_stops_single_and_bulk_sends_until_released(
    temporal_client, engine, tmp_path
):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack, http = inbound.stack, inbound.stack.http
        tenant = stack.tenant()
        hosted = inbound.hosted(tenant)
        gone = await stack.candidate(tenant, name="Gone Away")
        other = await stack.candidate(tenant, name="Still Here")
        sent = await stack.send(tenant, gone["id"])
        sent = await stack.wait_for_status(tenant, sent["id"], {"sent"})
        await inbound.deliver(
            samples.dsn_bounce(
                to=hosted,
                failed_recipient=gone["email"].upper(),  # a bounce may write it either way
                original_message_id=sent["message_id_header"],
            ),
            hosted,
            mail_from="",
        )
        await inbound.wait_routed(tenant)
        listed = (await http.get("/v1/suppressions", headers=tenant.headers)).json()
        delivered_before = len(inbound.sink.received)

        # A single send is refused before any attempt, with the reason and the way out.
        refused = await stack.send(tenant, gone["id"])
        refused = await stack.wait_for_status(tenant, refused["id"], {"sent", "failed"})
        # A bulk send leaves the address out and counts it.
        job = await start_bulk(stack, tenant, [gone["id"], other["id"]])
        job = await wait_job(http, tenant, job["id"])
        bulk_messages = (
            await http.get(f"/v1/candidates/{gone['id']}/messages", headers=tenant.headers)
        ).json()
        delivered_during = len(inbound.sink.received) - delivered_before

        released = await http.delete(f"/v1/suppressions/{gone['email']}", headers=tenant.headers)
        again = await http.delete(f"/v1/suppressions/{gone['email']}", headers=tenant.headers)
        after = await stack.send(tenant, gone["id"])
        after = await stack.wait_for_status(tenant, after["id"], {"sent", "failed"})
        with Session(engine) as session:
            types = [
                e.type
                for e in session.exec(
                    select(Event).where(Event.company_id == tenant.company.id)
                ).all()
            ]
            audit = session.exec(
                select(AuditEvent.action).where(AuditEvent.company_id == tenant.company.id)
            ).all()

    assert [(s["address"], s["reason"]) for s in listed] == [(gone["email"], "hard_bounce")]
    assert "5.1.1" in listed[0]["detail"]
    assert refused["status"] == "failed"
    assert refused["error"].startswith("Not sent: the candidate's address is on your suppression")
    assert "refused mail for it permanently" in refused["error"]
    assert "DELETE /v1/suppressions/" in refused["error"]
    assert refused["attempts"] == 0
    assert job["counts"]["skipped"] == 1 and job["counts"]["sent"] == 1
    assert job["progress"] == 1.0
    [skipped] = [m for m in bulk_messages if m["status"] == "skipped"]
    assert "suppression list" in skipped["error"] and skipped["attempts"] == 0
    assert delivered_during == 1  # the other candidate's bulk message only
    assert released.status_code == 204 and again.status_code == 404
    assert after["status"] == "sent"
    assert {"suppression.added", "suppression.released", "message.skipped"} <= set(types)
    assert "suppression.release" in audit


async def test_a_spam_complaint_suppresses_the_address(temporal_client, engine, tmp_path):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack, http = inbound.stack, inbound.stack.http
        tenant = stack.tenant()
        hosted = inbound.hosted(tenant)
        candidate = await stack.candidate(tenant)
        sent = await stack.send(tenant, candidate["id"])
        sent = await stack.wait_for_status(tenant, sent["id"], {"sent"})
        await inbound.deliver(
            samples.arf_complaint(
                to=hosted,
                complainer=candidate["email"],
                original_message_id=sent["message_id_header"],
            ),
            hosted,
            mail_from="",
        )
        await inbound.wait_routed(tenant)
        listed = (
            await http.get("/v1/suppressions?reason=complaint", headers=tenant.headers)
        ).json()
        thread = await inbound.messages(tenant, candidate["id"])
        await inbound.wait_runs_ended(tenant)
        # Erased: the list keeps the address's hash only, and the address stays suppressed.
        erasure = (
            await http.post(f"/v1/candidates/{candidate['id']}/erase", headers=tenant.headers)
        ).json()
        await eventually(
            lambda: http.get(f"/v1/erasures/{erasure['id']}", headers=tenant.headers),
            lambda r: r.json()["status"] == "done",
            what="the erasure",
        )
        after = (await http.get("/v1/suppressions", headers=tenant.headers)).json()
        with Session(engine) as session:
            still = suppression.find(session, tenant.company.id, candidate["email"])

    assert [s["address"] for s in listed] == [candidate["email"]]
    assert [(s["address"], s["reason"]) for s in after] == [(None, "complaint")]
    assert still is not None and still.address is None
    assert listed[0]["detail"] == "abuse report from arf.mail.example.net"
    report = thread[-1]
    assert report["kind"] == "auto_reply" and report["match_reason"] == "thread"
    assert len(inbound.sink.received) == 1  # our message; nothing answers a complaint


async def test_the_list_by_hand_is_scoped_to_the_company_and_its_admins(
    temporal_client, engine, tmp_path
):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack, http = inbound.stack, inbound.stack.http
        a, b = stack.tenant(name="A Corp"), stack.tenant(name="B Corp")
        recruiter = stack.user(a, [Permission.MESSAGING])
        body = {"address": "Someone@Example.COM", "detail": "asked by phone"}
        added = await http.post("/v1/suppressions", json=body, headers=a.headers)
        twice = await http.post("/v1/suppressions", json=body, headers=a.headers)
        by_recruiter = await http.post(
            "/v1/suppressions", json={"address": "x@example.com"}, headers=recruiter
        )
        invalid = await http.post(
            "/v1/suppressions", json={"address": "not an address"}, headers=a.headers
        )
        seen_by_a = (
            await http.get(
                "/v1/suppressions?address=someone@example.com&reason=manual", headers=a.headers
            )
        ).json()
        seen_by_b = (await http.get("/v1/suppressions", headers=b.headers)).json()
        by_other_reason = (
            await http.get("/v1/suppressions?reason=complaint", headers=a.headers)
        ).json()
        released_by_b = await http.delete("/v1/suppressions/someone@example.com", headers=b.headers)
        # B's own send to the same address goes: lists are per company.
        with Session(engine) as session:
            [added_event] = session.exec(
                select(Event).where(
                    Event.company_id == a.company.id,
                    Event.type == EventType.SUPPRESSION_ADDED,
                )
            ).all()
        candidate = await stack.candidate(b, email="someone@example.com")
        sent = await stack.send(b, candidate["id"])
        sent = await stack.wait_for_status(b, sent["id"], {"sent", "failed"})

    assert added.status_code == 201, added.text
    assert added.json()["address"] == "someone@example.com"
    assert added.json()["reason"] == "manual"
    assert twice.status_code == 409 and "already" in twice.json()["detail"]
    assert by_recruiter.status_code == 403
    assert invalid.status_code == 422
    assert [s["detail"] for s in seen_by_a] == ["asked by phone"]
    # An admin's note is free text: only endpoints that take personal data get it.
    assert added_event.data["detail"] is None
    assert added_event.personal["detail"] == "asked by phone"
    assert seen_by_b == [] and by_other_reason == []
    assert released_by_b.status_code == 404
    assert sent["status"] == "sent"


# -- the rules, on the database alone -------------------------------------------------------------


def test_soft_bounces_suppress_at_the_limit_within_seven_days(engine):
    company = new_company(engine)
    start = utcnow()
    with Session(engine) as session:

        def bounce(days: float):
            return suppression.note_bounce(
                session,
                company,
                "Flaky@example.com",
                permanent=False,
                detail="4.4.7 delivery time expired",
                limit=3,
                at=start + timedelta(days=days),
            )

        assert bounce(0) is None
        assert bounce(1) is None
        assert bounce(7.5) is None  # the first is out of the window: two in 7 days
        made = bounce(7.9)  # three within 7 days
        session.commit()
        assert made is not None and made.reason == SuppressionReason.SOFT_BOUNCES
        assert "3 deliveries given up within 7 days" in made.detail
        assert suppression.find(session, company, "flaky@EXAMPLE.com") is not None


def test_an_erased_address_stays_suppressed_by_its_hash(engine):
    company, other = new_company(engine), new_company(engine)
    with Session(engine) as session:
        suppression.suppress(
            session,
            company,
            "ines@example.com",
            SuppressionReason.HARD_BOUNCE,
            "550 5.1.1 <ines@example.com>: unknown",
        )
        session.commit()
        suppression.forget_address(session, company, "ines@example.com")
        session.commit()
        row = session.exec(select(Suppression).where(Suppression.company_id == company)).one()
        event = session.exec(
            select(Event).where(
                Event.company_id == company, Event.type == EventType.SUPPRESSION_ADDED
            )
        ).one()
        assert row.address is None and "ines@example.com" not in row.detail
        assert event.personal is None
        assert suppression.find(session, company, "Ines@Example.com") is not None
        assert suppression.find(session, other, "ines@example.com") is None
        assert row.address_hash != suppression.address_hash(other, "ines@example.com")


async def test_mailjet_events_suppress_only_what_they_are_about(temporal_client, engine, tmp_path):
    from tests.test_inbound import SECRET

    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack, http = inbound.stack, inbound.stack.http
        a, b = stack.tenant(name="A Corp"), stack.tenant(name="B Corp")
        people = [await stack.candidate(a, name=n) for n in ("Hard", "Soft", "Spam", "Block")]
        sent = {}
        for person in people:
            queued = await stack.send(a, person["id"])
            sent[person["name"]] = await stack.wait_for_status(a, queued["id"], {"sent"})
        other = await stack.candidate(b, name="Other")

        def event(kind: str, person: dict, **fields) -> dict:
            return {
                "event": kind,
                "time": 1_800_000_000,
                "MessageID": 19421777835146490,
                "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0gh1i2j",
                "email": person["email"],
                "CustomID": sent[person["name"]]["id"],
                **fields,
            }

        callback = [
            event("bounce", people[0], hard_bounce=True, blocked=False,
                  error_related_to="recipient", error="user unknown"),
            event("bounce", people[1], hard_bounce=False, blocked=False,
                  error_related_to="mailbox", error="quota exceeded"),
            event("spam", people[2], source="JMRPP"),
            event("blocked", people[3], error_related_to="recipient",
                  error="preblocked"),
            event("open", people[1]),
            # Forged: another company's candidate, with one of A's message ids.
            {**event("spam", people[0]), "email": other["email"]},
            {"event": "spam", "CustomID": "not-an-id", "email": other["email"]},
        ]  # fmt: skip
        refused = await http.post("/inbound/mailjet/events", json=callback)
        taken = await http.post(
            "/inbound/mailjet/events",
            json=callback,
            headers={"Authorization": f"Bearer {SECRET}"},
        )
        listed = (await http.get("/v1/suppressions", headers=a.headers)).json()
        listed_b = (await http.get("/v1/suppressions", headers=b.headers)).json()
        hard = await stack.wait_for_status(a, sent["Hard"]["id"], {"bounced"})

    assert refused.status_code == 401
    assert taken.status_code == 200 and taken.json() == {"taken": 4}
    reasons = {s["address"]: s["reason"] for s in listed}
    assert reasons == {
        people[0]["email"]: "hard_bounce",
        people[2]["email"]: "complaint",
        people[3]["email"]: "hard_bounce",
    }  # one soft bounce is not enough
    assert listed_b == []
    assert "user unknown" in hard["error"]


async def test_three_soft_bounces_over_smtp_suppress_two_do_not(temporal_client, engine, tmp_path):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack, http = inbound.stack, inbound.stack.http
        tenant = stack.tenant()
        hosted = inbound.hosted(tenant)
        flaky = await stack.candidate(tenant, name="Flaky Mailbox")
        listed_after = []
        for _ in range(3):
            queued = await stack.send(tenant, flaky["id"])
            sent = await stack.wait_for_status(tenant, queued["id"], {"sent", "failed"})
            assert sent["status"] == "sent", sent  # two soft bounces do not stop sending
            await inbound.deliver(
                samples.dsn_bounce(
                    to=hosted,
                    failed_recipient=flaky["email"],
                    original_message_id=sent["message_id_header"],
                    status="4.4.7",
                    diagnostic="smtp; 451 4.4.7 Delivery time expired",
                ),
                hosted,
                mail_from="",
            )
            await inbound.wait_routed(tenant)
            listed_after.append((await http.get("/v1/suppressions", headers=tenant.headers)).json())
        refused = await stack.send(tenant, flaky["id"])
        refused = await stack.wait_for_status(tenant, refused["id"], {"sent", "failed"})

    assert listed_after[0] == [] and listed_after[1] == []
    [row] = listed_after[2]
    assert row["reason"] == "soft_bounces"
    assert "3 deliveries given up within 7 days" in row["detail"]
    assert refused["status"] == "failed" and "deliveries to it kept failing" in refused["error"]
