"""Composing on real sends: send later and undo (a durable timer in send-message), templates and
signatures on a single send, and interview invitations out over SMTP and answered back."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from datetime import UTC, datetime, timedelta

from icalendar import Calendar
from sqlmodel import Session, col, select
from temporalio.client import WorkflowExecutionStatus

from contracts.send import SendMessageResult
from core.models import Event
from tests.helpers import LOAD_SLACK, eventually, relay_stack
from tests.test_bulk import wait_job
from tests.test_inbound import inbound_stack
from tests.test_replay import HISTORIES
from tests.test_templates import TEMPLATE, reply_mail


async def get(stack, tenant, message_id: str) -> dict:
    response = await stack.http.get(f"/v1/messages/{message_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


def later(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def events_of(engine, company_id, type_: str) -> list[dict]:
    with Session(engine) as session:
        rows = session.exec(
            select(Event)
            .where(Event.company_id == company_id, Event.type == type_)
            .order_by(col(Event.created_at))
        ).all()
        return [row.data for row in rows]


async def test_send_later_waits_and_cancel_edit_and_undo_are_truthful(
    temporal_client, engine, tmp_path
):
    async with relay_stack(temporal_client, engine, tmp_path) as (stack, sink):
        tenant, other = stack.tenant(), stack.tenant()
        http = stack.http
        candidate = await stack.candidate(tenant)

        def received(subject: str) -> list:
            return [m for m in sink.received if m.message["Subject"] == subject]

        # Bad times are refused, naming the field.
        for when, words in (
            (later(-5), "in the future"),
            (later(91 * 86400), "90 days"),
            ("2026-12-31T09:00:00", "time zone"),
        ):
            refused = await http.post(
                f"/v1/candidates/{candidate['id']}/messages",
                json={"subject": "x", "text": "x", "send_at": when},
                headers=tenant.headers,
            )
            assert refused.status_code == 422 and words in refused.text, refused.text

        # 1. Goes at its time, not before: a durable timer, visible as `scheduled`.
        due = datetime.now(UTC) + timedelta(seconds=3)
        timed = await stack.send(tenant, candidate["id"], subject="Timed", send_at=due.isoformat())
        assert timed["status"] == "scheduled"
        assert datetime.fromisoformat(timed["send_at"]) == due
        # 2. Cancelled while scheduled: never sent, its run ends at once.
        dropped = await stack.send(tenant, candidate["id"], subject="Dropped", send_at=later(600))
        # 3. Edited while scheduled: the new words at the new time.
        edited = await stack.send(tenant, candidate["id"], subject="Draft", send_at=later(600))
        foreign = [
            await http.post(f"/v1/messages/{dropped['id']}/cancel", headers=other.headers),
            await http.patch(
                f"/v1/messages/{edited['id']}", json={"subject": "Theirs"}, headers=other.headers
            ),
        ]
        assert [r.status_code for r in foreign] == [404, 404]
        cancel = await http.post(f"/v1/messages/{dropped['id']}/cancel", headers=tenant.headers)
        assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
        schedule_file = await http.post(
            "/v1/attachments",
            files={"file": ("schedule.pdf", b"%PDF-1.4 the day's schedule", "application/pdf")},
            headers=tenant.headers,
        )
        patch = await http.patch(
            f"/v1/messages/{edited['id']}",
            json={
                "subject": "Final",
                "text": "The final text",
                "send_at": later(2),
                "attachment_ids": [schedule_file.json()["id"]],
            },
            headers=tenant.headers,
        )
        assert patch.status_code == 200 and patch.json()["subject"] == "Final"

        assert (await get(stack, tenant, timed["id"]))["status"] == "scheduled"
        assert not received("Timed")
        sent = await stack.wait_for_status(tenant, timed["id"], {"sent"}, timeout=30)
        assert datetime.fromisoformat(sent["sent_at"]) >= due - timedelta(seconds=1)
        await stack.wait_for_status(tenant, edited["id"], {"sent"}, timeout=30)
        if os.environ.get("RECRUITMAIL_RECORD_HISTORIES"):  # a timer, a wake-up, a release
            history = await temporal_client.get_workflow_handle(
                edited["workflow_id"]
            ).fetch_history()
            (HISTORIES / "send-message-scheduled.json").write_text(history.to_json())
        [final] = received("Final")
        assert "The final text" in final.message.get_body(("plain",)).get_content()
        [file] = list(final.message.iter_attachments())
        assert file.get_filename() == "schedule.pdf"
        assert file.get_payload(decode=True) == b"%PDF-1.4 the day's schedule"
        handle = temporal_client.get_workflow_handle(dropped["workflow_id"])
        described = await eventually(
            handle.describe,
            lambda d: d.status == WorkflowExecutionStatus.COMPLETED,
            what="the cancelled message's run ending",
        )
        assert described.status == WorkflowExecutionStatus.COMPLETED
        assert not received("Dropped") and not received("Draft")

        # 4. Too late: a cancel or an edit after it went is told so.
        late_cancel = await http.post(f"/v1/messages/{timed['id']}/cancel", headers=tenant.headers)
        late_edit = await http.patch(
            f"/v1/messages/{timed['id']}", json={"subject": "x"}, headers=tenant.headers
        )
        assert late_cancel.status_code == 409 and "already sent" in late_cancel.json()["detail"]
        assert late_edit.status_code == 409 and "already sent" in late_edit.json()["detail"]

        # 5. The undo window: every single send waits, a cancel within it sends nothing.
        settings = await http.patch(
            "/v1/mail-settings", json={"undo_seconds": 5}, headers=tenant.headers
        )
        assert settings.status_code == 200 and settings.json()["undo_seconds"] == 5
        too_short = await http.patch(
            "/v1/mail-settings", json={"undo_seconds": 2}, headers=tenant.headers
        )
        assert too_short.status_code == 422
        oops = await stack.send(tenant, candidate["id"], subject="Oops")
        kept = await stack.send(tenant, candidate["id"], subject="Kept")
        assert oops["status"] == kept["status"] == "scheduled"
        started = time.monotonic()
        undo = await http.post(f"/v1/messages/{oops['id']}/cancel", headers=tenant.headers)
        assert undo.status_code == 200
        await stack.wait_for_status(tenant, kept["id"], {"sent"}, timeout=30)
        assert time.monotonic() - started >= 3.5  # it waited out the window
        assert not received("Oops") and len(received("Kept")) == 1

        # 6. An erasure cancels scheduled mail, as it does queued mail.
        await http.patch("/v1/mail-settings", json={"undo_seconds": 0}, headers=tenant.headers)
        doomed = await stack.candidate(tenant)
        waiting = await stack.send(tenant, doomed["id"], subject="Never", send_at=later(600))
        erase = await http.post(f"/v1/candidates/{doomed['id']}/erase", headers=tenant.headers)
        assert erase.status_code in (200, 202), erase.text
        gone = await stack.wait_for_status(tenant, waiting["id"], {"cancelled"}, timeout=30)
        assert gone["status"] == "cancelled"
        # Its run, asleep until send_at ten minutes away, is woken by the erasure and ends now.
        run = stack.client.get_workflow_handle(
            f"send-message-{waiting['id']}", result_type=SendMessageResult
        )
        ended_run = await asyncio.wait_for(run.result(), timeout=30 * LOAD_SLACK)
        assert ended_run.status == "cancelled"

        # 7. A bulk send later: `scheduled` until its time; one cancelled meanwhile sends nothing.
        async def bulk(subject: str, when: str) -> dict:
            body = {"candidate_ids": [candidate["id"]], "subject": subject, "text": "News",
                    "send_at": when, "unsubscribe": False}  # fmt: skip
            answer = await http.post("/v1/bulk-messages", json=body, headers=tenant.headers)
            assert answer.status_code == 202, answer.text
            return answer.json()

        bulk_due = datetime.now(UTC) + timedelta(seconds=3)
        timed_job = await bulk("Bulk later", bulk_due.isoformat())
        dropped_job = await bulk("Bulk dropped", later(600))
        assert timed_job["status"] == dropped_job["status"] == "scheduled"
        stop = await http.post(
            f"/v1/bulk-messages/{dropped_job['id']}/cancel", headers=tenant.headers
        )
        assert stop.status_code == 200, stop.text
        ended = await wait_job(http, tenant, dropped_job["id"], ("cancelled",), timeout=30)
        done = await wait_job(http, tenant, timed_job["id"], timeout=30)
        assert ended["counts"]["cancelled"] == 1 and done["counts"]["sent"] == 1
        assert len(received("Bulk later")) == 1 and not received("Bulk dropped")
        assert datetime.fromisoformat(done["finished_at"]) >= bulk_due - timedelta(seconds=1)

    scheduled = {e["message_id"] for e in events_of(engine, tenant.company.id, "message.scheduled")}
    assert {timed["id"], dropped["id"], edited["id"], oops["id"], kept["id"]} <= scheduled
    cancelled = {e["message_id"] for e in events_of(engine, tenant.company.id, "message.cancelled")}
    assert {dropped["id"], oops["id"], waiting["id"]} <= cancelled
    assert timed["id"] not in cancelled and kept["id"] not in cancelled


async def test_a_template_send_renders_its_variant_with_the_signature_and_refuses_a_gap(
    temporal_client, engine, tmp_path
):
    async with relay_stack(temporal_client, engine, tmp_path) as (stack, sink):
        tenant = stack.tenant()
        http = stack.http
        template = (await http.post("/v1/templates", json=TEMPLATE, headers=tenant.headers)).json()
        await http.patch(
            "/v1/mail-settings",
            json={"signature_text": "Acme Recruiting\nacme.example"},
            headers=tenant.headers,
        )
        me = await http.patch(
            "/v1/me",
            json={"title": "Head of Talent", "signature_text": "Ada Admin\nHead of Talent"},
            headers=tenant.headers,
        )
        assert me.status_code == 200 and me.json()["title"] == "Head of Talent"
        german = await stack.candidate(tenant, name="Grace Hopper", language="de")
        gap = await http.post(
            f"/v1/candidates/{german['id']}/messages",
            json={"template_id": template["id"]},
            headers=tenant.headers,
        )
        assert gap.status_code == 422 and "{{ job.title }}" in gap.json()["detail"]
        queued = await stack.send(
            tenant,
            german["id"],
            subject=None,
            text=None,
            template_id=template["id"],
            data={"job": {"title": "Backend <Engineer>"}},
        )
        sent = await stack.wait_for_status(tenant, queued["id"], {"sent"})
        # In the employee's name, their own signature; unsigned on request.
        await http.patch(
            "/v1/mail-settings", json={"sender_name_mode": "employee"}, headers=tenant.headers
        )
        english = await stack.candidate(tenant, name="Linus Torvalds")
        signed = await stack.send(
            tenant,
            english["id"],
            template_id=template["id"],
            subject=None,
            text=None,
            data={"job": {"title": "SRE"}},
        )
        bare = await stack.send(tenant, english["id"], signature=False, subject="Bare", text="Hi")
        signed = await stack.wait_for_status(tenant, signed["id"], {"sent"})
        await stack.wait_for_status(tenant, bare["id"], {"sent"})
        # A template's default attachment goes with each single send; bulk sends refuse it.
        offer = b"%PDF-1.4\n" + bytes(range(256)) * 40
        with_file = await http.post(
            "/v1/templates",
            json={
                "name": "Offer",
                "type": "offer",
                "variants": [{"language": "en", "subject": "Your offer", "text": "Attached."}],
                "attachments": [
                    {
                        "filename": "Offer letter.pdf",
                        "content_type": "application/pdf",
                        "content_base64": base64.b64encode(offer).decode(),
                    }
                ],
            },
            headers=tenant.headers,
        )
        assert with_file.status_code == 201, with_file.text
        offered = await stack.send(
            tenant, english["id"], subject=None, text=None, template_id=with_file.json()["id"]
        )
        offered = await stack.wait_for_status(tenant, offered["id"], {"sent"})
        [listed] = offered["attachments"]
        download = await http.get(
            f"/v1/messages/{offered['id']}/attachments/{listed['id']}", headers=tenant.headers
        )
        bulk = await http.post(
            "/v1/bulk-messages",
            json={"candidate_ids": [english["id"]], "template_id": with_file.json()["id"]},
            headers=tenant.headers,
        )
        # A bulk send takes the template's files too (stored once for the job).
        assert bulk.status_code == 202, bulk.text
        assert [f["filename"] for f in bulk.json()["files"]] == [
            a["filename"] for a in offered["attachments"]
        ]
        # A 12 MB file, uploaded first, goes with a single send through the SMTP relay.
        portfolio = os.urandom(12_000_000)
        uploaded = await http.post(
            "/v1/attachments",
            files={"file": ("portfolio.zip", portfolio, "application/zip")},
            headers=tenant.headers,
        )
        assert uploaded.status_code == 201, uploaded.text
        big = await stack.send(
            tenant, english["id"], subject="Portfolio", text="Here it is.",
            attachment_ids=[uploaded.json()["id"]],
        )  # fmt: skip
        big = await stack.wait_for_status(tenant, big["id"], {"sent"}, timeout=60)

    assert sent["template_id"] == template["id"] and sent["template_language"] == "de"
    assert sent["subject"] == "Ihre Bewerbung bei Acme"
    assert sent["text"] == (
        "Hallo Grace,\ndanke für das Gespräch zur Stelle Backend <Engineer>.\n\n"
        "-- \nAcme Recruiting\nacme.example\n"
    )
    by_subject = {m.message["Subject"]: m.message for m in sink.received}
    mail = by_subject["Ihre Bewerbung bei Acme"]
    assert mail.get_body(("plain",)).get_content().replace("\r\n", "\n") == sent["text"]
    assert signed["template_language"] == "en" and signed["text"].endswith(
        "-- \nAda Admin\nHead of Talent\n"
    )
    assert signed["html"].startswith("<p>Dear Linus,</p>")
    assert by_subject["Bare"].get_body(("plain",)).get_content().strip() == "Hi"
    [part] = list(by_subject["Your offer"].iter_attachments())
    assert (
        part.get_filename() == "Offer letter.pdf" and part.get_content_type() == "application/pdf"
    )
    assert part.get_payload(decode=True) == offer
    assert listed["filename"] == "Offer letter.pdf" and listed["size"] == len(offer)
    assert download.content == offer
    [zipped] = list(by_subject["Portfolio"].iter_attachments())
    assert zipped.get_filename() == "portfolio.zip" and zipped.get_payload(decode=True) == portfolio
    assert [a["size"] for a in big["attachments"]] == [len(portfolio)]


async def test_an_invitation_goes_out_as_a_calendar_event_and_its_answer_comes_back(
    temporal_client, engine, tmp_path
):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack = inbound.stack
        tenant = stack.tenant()
        http = stack.http
        candidate = await stack.candidate(tenant, timezone="Europe/Berlin", language="de")
        invitation = {
            "start": "2026-12-08T14:00:00+01:00",
            "end": "2026-12-08T15:00:00+01:00",
            "timezone": "Europe/Berlin",
            "location": "Acme HQ, Room 4",
        }
        template = await http.post(
            "/v1/templates",
            json={
                "name": "Einladung",
                "type": "invitation",
                "variants": [
                    {
                        "language": "de",
                        "subject": "Einladung zum Gespräch",
                        "text": "Wir sehen uns am {{ interview.start }}, {{ interview.location }}.",
                    }
                ],
            },
            headers=tenant.headers,
        )
        first = await stack.send(
            tenant, candidate["id"], subject=None, text=None, invitation=invitation,
            template_id=template.json()["id"],
        )  # fmt: skip
        uid = first["invitation"]["uid"]
        moved = {**invitation, "uid": uid, "start": "2026-12-09T10:00:00+01:00",
                 "end": "2026-12-09T11:00:00+01:00"}  # fmt: skip
        second = await stack.send(tenant, candidate["id"], subject="Moved", invitation=moved)
        await stack.wait_for_status(tenant, first["id"], {"sent"})
        await stack.wait_for_status(tenant, second["id"], {"sent"})
        reused = await http.post(
            f"/v1/candidates/{(await stack.candidate(tenant))['id']}/messages",
            json={"subject": "x", "text": "x", "invitation": moved},
            headers=tenant.headers,
        )
        assert reused.status_code == 422 and "another candidate" in reused.json()["detail"]

        events = []
        for received in inbound.sink.received:
            [part] = [p for p in received.message.walk() if p.get_content_type() == "text/calendar"]
            assert part.get_param("method") == "REQUEST"
            events.append(Calendar.from_ical(part.get_content()).walk("VEVENT")[0])
        # The candidate's calendar answers the update (Google Calendar's shape).
        answer = reply_mail(uid, candidate["email"], "ACCEPTED", sequence=1)
        await inbound.deliver(answer, inbound.hosted(tenant), mail_from=candidate["email"])
        await inbound.wait_routed(tenant)
        answered = await get(stack, tenant, second["id"])
        unassigned = await inbound.unassigned(tenant)
        tab = await inbound.messages(tenant, candidate["id"])

    assert [str(e["uid"]) for e in events] == [uid, uid]
    assert [int(e["sequence"]) for e in events] == [0, 1]
    assert events[1]["dtstart"].dt.astimezone(UTC) == datetime(2026, 12, 9, 9, tzinfo=UTC)
    assert str(events[0]["location"]) == "Acme HQ, Room 4"
    assert answered["invitation"]["answer"] == "accepted"
    assert unassigned == [] and [m["direction"] for m in tab] == ["outbound", "outbound"]
    [event] = events_of(engine, tenant.company.id, "invitation.answered")
    assert event == {
        "message_id": second["id"], "candidate_id": candidate["id"], "uid": uid,
        "answer": "accepted", "sequence": 1,
    }  # fmt: skip
    # The text named the time in the candidate's language and zone.
    assert first["text"].startswith(
        "Wir sehen uns am Dienstag, 8. Dezember 2026, 14:00 (Mitteleuropäische Normalzeit), "
        "Acme HQ, Room 4."
    )
