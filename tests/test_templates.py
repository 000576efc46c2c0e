"""Composing, the word `templates` (core/templates/, api/routers/templates.py): merge fields and
their sandbox, the variant by language, signatures, interview invitations made and answered.
These need no Temporal: the rules on their own, and the API routes that only read and write."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import httpx
import pytest
from icalendar import Calendar
from sqlmodel import Session, select

from api.app import create_app
from core.mail import compose
from core.models import Attachment, Candidate, Event, Invitation, Message, Permission
from core.templates import draft, grammar, invitations
from core.templates.fields import choose_variant, format_when, values_for
from core.templates.signatures import Signature, append, choose, clean_html
from tests import helpers
from tests.helpers import Stack, Tenant, new_company

pytestmark = pytest.mark.fast


# -- the grammar and its sandbox ---------------------------------------------------------


def test_fields_render_with_fallbacks_and_a_missing_one_is_named():
    values = values_for(candidate_name="Ada Lovelace", company_name="Acme", sender_name="Rita")
    out = grammar.render(
        "Hello {{ candidate.first_name }}",
        'Dear {{ candidate.first_name | default("there") }} {{ candidate.last_name }},\n'
        '{{ job.title | default("the role") }} at {{ company.name }}. {{ sender.name }}',
        None,
        values,
    )
    assert out.subject == "Hello Ada"
    assert out.text == "Dear Ada Lovelace,\nthe role at Acme. Rita"

    nameless = values_for(candidate_name="", company_name="Acme", sender_name="Rita")
    fallback = grammar.render(
        None, 'Dear {{ candidate.first_name | default("there") }},', None, nameless
    )
    assert fallback.text == "Dear there,"
    with pytest.raises(grammar.MissingFields) as refused:
        grammar.render("Hi {{ candidate.first_name }}", "{{ job.title }}", None, nameless)
    assert refused.value.fields == ["candidate.first_name", "job.title"]
    assert "{{ candidate.first_name }}" in str(refused.value)
    # Blank is empty: "Dear   ," never goes out either.
    blank = values_for(candidate_name="   ", company_name="Acme", sender_name="Rita")
    with pytest.raises(grammar.MissingFields):
        grammar.render(None, "Dear {{ candidate.name }},", None, blank)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ candidate.__class__.__mro__ }}",
        "{{ candidate.name.__class__ }}",
        "{{ candidate.name.upper() }}",
        "{{ candidate['name'] }}",
        "{{ '{0.__class__}'.format(candidate) }}",
        "{{ candidate.name | attr('__class__') }}",
        "{{ candidate.name | format('%s') }}",
        "{{ lipsum }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ 7 * 7 }}",
        "{% for x in candidate %}{{ x }}{% endfor %}",
        "{% set x = 1 %}",
        "{{ candidate.name | default(candidate.email) }}",
        "{{ candidate.age }}",
        "{{ self }}",
        "{{ candidate",
    ],
)
def test_what_is_outside_the_grammar_is_refused_with_the_place(source):
    with pytest.raises(grammar.TemplateError) as refused:
        grammar.check("text", "Hello\n" + source)
    assert "text: line 2" in str(refused.value)


def test_a_filter_before_the_fallback_lets_a_missing_value_fall_back():
    values = values_for(candidate_name="ada lovelace", company_name="Acme", sender_name="R")
    out = grammar.render(
        None,
        '{{ job.title | upper | default("the role") }} / {{ candidate.name | title }}',
        None,
        values,
    )
    assert out.text == "the role / Ada Lovelace"


def test_values_cannot_inject_html_or_headers():
    values = values_for(
        candidate_name="Eve <script>alert(1)</script>\r\nBcc: x@evil.example",
        company_name="Acme & Sons",
        sender_name="Rita",
    )
    out = grammar.render(
        "Hi {{ candidate.name }}",
        "Dear {{ candidate.name }}",
        "<p>{{ candidate.name }}</p>",
        values,
    )
    assert "\n" not in out.subject and "\r" not in out.subject
    assert "<script>" not in (out.html or "") and "&lt;script&gt;" in (out.html or "")
    assert "<script>" in (out.text or "")  # plain text is shown as text, never as markup
    # The platform's own fields (data) go through the same escaping.
    data = values_for(
        candidate_name="Ada",
        company_name="A",
        sender_name="R",
        data={"job": {"title": "<b>CTO</b>"}},
    )
    html = grammar.render(None, None, "{{ job.title }}", data).html
    assert html == "&lt;b&gt;CTO&lt;/b&gt;"


def test_the_variant_follows_the_candidate_then_the_company_then_the_first():
    variants = [
        {"language": "en", "subject": "Hello", "text": "Hello"},
        {"language": "de-DE", "subject": "Hallo", "text": "Hallo"},
        {"language": "fr", "subject": "Bonjour", "text": "Bonjour"},
    ]
    assert choose_variant(variants, "fr", "de")["language"] == "fr"
    assert choose_variant(variants, "de-AT", None)["language"] == "de-DE"  # by primary tag
    assert choose_variant(variants, "FR-ca", None)["language"] == "fr"
    assert choose_variant(variants, "it", "de")["language"] == "de-DE"  # the company's
    assert choose_variant(variants, "it", "pt")["language"] == "en"  # the first
    assert choose_variant(variants, None, None)["language"] == "en"
    chosen = draft(values={}, variants=variants, language="de")
    assert (chosen.subject, chosen.language) == ("Hallo", "de-DE")


def test_an_interview_time_is_written_in_the_candidate_language_and_zone():
    start = datetime(2026, 12, 8, 13, 0, tzinfo=UTC)
    german = format_when(start, "de", "Europe/Berlin")
    english = format_when(start, "en-GB", "America/New_York")
    assert "Dienstag" in german and "Dezember" in german and "14:00" in german
    assert "Tuesday" in english and "08:00" in english
    values = values_for(
        candidate_name="Ada",
        company_name="A",
        sender_name="R",
        language="de",
        timezone="Europe/Berlin",
        interview={"start": start, "location": "Raum 1"},
    )
    assert values["interview"] == {"start": german, "location": "Raum 1"}


# -- signatures ------------------------------------------------------------------------------


def test_the_signature_follows_the_sender_and_its_html_is_made_safe():
    user = Signature("Rita Recruiter", None)
    entity = Signature("Acme GmbH", "<p>Acme GmbH<script>x()</script></p>")
    company = Signature("Acme", None)
    assert choose(employee_mode=True, user=user, entity=entity, company=company) is user
    assert choose(employee_mode=False, user=user, entity=entity, company=company) is entity
    assert (
        choose(employee_mode=True, user=Signature(None, None), entity=None, company=company)
        is company
    )
    assert choose(employee_mode=False, user=None, entity=None, company=None) is None
    text, html = append("Hello", "<p>Hello</p>", Signature("Rita\nAcme", None))
    assert text == "Hello\n\n-- \nRita\nAcme\n"
    assert html is not None and html.endswith('<div class="signature">-- <br>Rita<br>Acme</div>')
    cleaned = clean_html(
        '<p onclick="steal()">Rita<script>alert(1)</script><a href="javascript:x">x</a></p>'
    )
    assert cleaned is not None and "script" not in cleaned and "onclick" not in cleaned
    assert "javascript" not in cleaned


# -- interview invitations -------------------------------------------------------------------


def _invite(engine, candidate_id, company_id, **fields):
    base = {
        "uid": None,
        "method": "request",
        "start": datetime(2026, 12, 8, 13, 0, tzinfo=UTC),
        "end": datetime(2026, 12, 8, 14, 0, tzinfo=UTC),
        "timezone": "Europe/Berlin",
        "location": "Room 4",
    }
    base.update(fields)
    with Session(engine) as session:
        planned = invitations.plan(
            session,
            company_id=company_id,
            candidate_id=candidate_id,
            message_id=uuid.uuid4(),
            domain="jobs.test.example",
            **base,
        )
        session.commit()
    return planned


def _parsed(planned: dict) -> tuple[Calendar, object]:
    method, ics = invitations.calendar_for(
        planned,
        summary="Interview",
        organizer=invitations.Party("jobs@acme.example", "Acme"),
        attendee=invitations.Party("ada@example.com", "Ada"),
    )
    cal = Calendar.from_ical(ics)
    assert str(cal["method"]) == method
    return cal, cal.walk("VEVENT")[0]


def test_an_invitation_parses_back_and_an_update_keeps_its_uid(engine):
    company_id = new_company(engine)
    with Session(engine, expire_on_commit=False) as session:
        candidate = Candidate(company_id=company_id, name="Ada", email="ada@example.com")
        session.add(candidate)
        session.commit()
    first = _invite(engine, candidate.id, company_id)
    cal, event = _parsed(first)
    assert str(cal["method"]) == "REQUEST"
    assert event["dtstart"].dt == datetime(2026, 12, 8, 14, 0, tzinfo=event["dtstart"].dt.tzinfo)
    assert str(event["dtstart"].dt.tzinfo) == "Europe/Berlin"
    assert event["dtend"].dt.astimezone(UTC) == datetime(2026, 12, 8, 14, 0, tzinfo=UTC)
    assert [tz["tzid"] for tz in cal.walk("VTIMEZONE")] == ["Europe/Berlin"]
    assert int(event["sequence"]) == 0 and str(event["location"]) == "Room 4"
    assert str(event["organizer"]) == "mailto:jobs@acme.example"
    assert event["attendee"].params["PARTSTAT"] == "NEEDS-ACTION"

    moved = _invite(
        engine,
        candidate.id,
        company_id,
        uid=first["uid"],
        start=datetime(2026, 12, 9, 9, tzinfo=UTC),
        end=datetime(2026, 12, 9, 10, tzinfo=UTC),
    )
    _, later = _parsed(moved)
    assert str(later["uid"]) == first["uid"] and int(later["sequence"]) == 1
    cancelled = _invite(engine, candidate.id, company_id, uid=first["uid"], method="cancel")
    cal, gone = _parsed(cancelled)
    assert str(cal["method"]) == "CANCEL" and str(gone["status"]) == "CANCELLED"
    assert int(gone["sequence"]) == 2
    # A cancel needs an invitation sent before; another candidate cannot take its uid.
    with pytest.raises(ValueError, match="sent before"):
        _invite(engine, candidate.id, company_id, uid="nope@x", method="cancel")
    with pytest.raises(ValueError, match="another candidate"):
        _invite(engine, uuid.uuid4(), company_id, uid=first["uid"])
    with pytest.raises(ValueError, match="after its start"):
        _invite(engine, candidate.id, company_id, end=datetime(2026, 12, 8, 12, tzinfo=UTC))


def test_the_mail_carries_the_calendar_as_clients_look_for_it():
    planned = {
        "uid": "u1@jobs.test.example", "sequence": 0, "method": "REQUEST",
        "start": "2026-12-08T13:00:00+00:00", "end": "2026-12-08T14:00:00+00:00",
        "timezone": "Europe/Berlin",
    }  # fmt: skip
    calendar = invitations.calendar_for(
        planned,
        summary="Interview",
        organizer=invitations.Party("jobs@acme.example", "Acme"),
        attendee=invitations.Party("ada@example.com", "Ada"),
    )
    _, composed = compose(
        from_address="jobs@acme.example", from_name="Acme", to_address="ada@example.com",
        to_name="Ada", subject="Interview", text="See you", html="<p>See you</p>",
        message_id="<1@acme.example>", date=datetime.now(UTC), calendar=calendar,
    )  # fmt: skip
    msg = message_from_bytes(composed.mime, policy=default_policy)
    kinds = [p.get_content_type() for p in msg.walk()]
    assert kinds == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/calendar",
        "application/ics",
    ]  # fmt: skip
    [part] = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    assert part.get_param("method") == "REQUEST"
    [ics] = [p for p in msg.walk() if p.get_content_type() == "application/ics"]
    assert ics.get_filename() == "invite.ics"
    assert Calendar.from_ical(part.get_content()).walk("VEVENT")[0]["uid"] == "u1@jobs.test.example"


def reply_mail(uid: str, who: str, partstat: str, sequence: int = 0) -> bytes:
    ics = (
        "BEGIN:VCALENDAR\r\nPRODID:-//Google Inc//Google Calendar 70.9054//EN\r\nVERSION:2.0\r\n"
        "METHOD:REPLY\r\nBEGIN:VEVENT\r\nDTSTART:20261208T130000Z\r\nDTEND:20261208T140000Z\r\n"
        f"DTSTAMP:20261207T100000Z\r\nORGANIZER:mailto:jobs@acme.example\r\nUID:{uid}\r\n"
        f"ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT={partstat};CN={who}:mailto:{who}\r\n"
        f"SEQUENCE:{sequence}\r\nSTATUS:CONFIRMED\r\nSUMMARY:Interview\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    return (
        f"From: {who}\r\nTo: jobs@acme.example\r\nSubject: Accepted: Interview\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n'
        "Content-Type: text/plain; charset=UTF-8\r\n\r\n"
        "Ada has accepted this invitation.\r\n--b\r\n"
        'Content-Type: text/calendar; charset="UTF-8"; method=REPLY\r\n\r\n'
        f"{ics}--b--\r\n"
    ).encode()


def test_a_calendar_reply_is_read():
    msg = message_from_bytes(
        reply_mail("u1@x", "ada@example.com", "ACCEPTED", 2), policy=default_policy
    )
    reply = invitations.read_reply(msg)
    assert reply == invitations.Reply("u1@x", "accepted", "ada@example.com", 2)
    declined = message_from_bytes(
        reply_mail("u1@x", "ADA@example.com", "DECLINED"), policy=default_policy
    )
    assert invitations.read_reply(declined).answer == "declined"  # type: ignore[union-attr]
    garbage = message_from_bytes(
        b"Content-Type: text/calendar; method=REPLY\r\n\r\nBEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n",
        policy=default_policy,
    )
    assert invitations.read_reply(garbage) is None
    not_reply = message_from_bytes(
        reply_mail("u1@x", "a@x", "ACCEPTED").replace(b"METHOD:REPLY", b"METHOD:REQUEST"),
        policy=default_policy,
    )
    assert invitations.read_reply(not_reply) is None


def test_an_answer_is_recorded_only_from_the_invited_candidate(engine):
    company_id = new_company(engine)
    other_company = new_company(engine)
    with Session(engine, expire_on_commit=False) as session:
        candidate = Candidate(company_id=company_id, name="Ada", email="ada@example.com")
        session.add(candidate)
        session.commit()
    planned = _invite(engine, candidate.id, company_id)
    stranger = invitations.Reply(planned["uid"], "declined", "mallory@example.com", 0)
    ada = invitations.Reply(planned["uid"], "accepted", "ada@example.com", 0)
    with Session(engine) as session:
        assert (
            invitations.record_answer(session, company_id, stranger, ["mallory@example.com"])
            is None
        )
        assert invitations.record_answer(session, other_company, ada, ["ada@example.com"]) is None
        row = invitations.record_answer(session, company_id, ada, ["ada@example.com"])
        session.commit()
        assert row is not None and row.answer == "accepted"
        stored = session.get(Invitation, row.id)
        assert stored is not None and stored.answer == "accepted"


# -- the API's routes that only read and write rows -------------------------------------------


@asynccontextmanager
async def api(engine, tmp_path: Path, **overrides) -> AsyncIterator[Stack]:
    settings = helpers.test_settings(tmp_path, **overrides)
    app = create_app(settings, engine=engine, temporal_client=None)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield Stack(settings, engine, None, http, app)  # type: ignore[arg-type]


TEMPLATE = {
    "name": "Rejection after interview",
    "type": "rejection",
    "variants": [
        {
            "language": "en",
            "subject": "Your application at {{ company.name }}",
            "text": 'Dear {{ candidate.first_name | default("applicant") }},\n'
            "thank you for the interview for {{ job.title }}.",
            "html": "<p>Dear {{ candidate.first_name }},</p>",
        },
        {
            "language": "de",
            "subject": "Ihre Bewerbung bei {{ company.name }}",
            "text": 'Hallo {{ candidate.first_name | default("zusammen") }},\n'
            "danke für das Gespräch zur Stelle {{ job.title }}.",
        },
    ],
}


async def test_templates_are_written_read_previewed_and_scoped(engine, tmp_path):
    # Requests up to 8 MiB, so the template's own 3 MiB bound is the one met.
    async with api(engine, tmp_path, max_request_bytes=8 * 1024 * 1024) as stack:
        tenant = stack.tenant()
        other = stack.tenant()
        http = stack.http
        created = await http.post("/v1/templates", json=TEMPLATE, headers=tenant.headers)
        assert created.status_code == 201, created.text
        template = created.json()
        assert template["fields"] == ["company.name", "candidate.first_name", "job.title"]
        same = await http.post("/v1/templates", json=TEMPLATE, headers=tenant.headers)
        assert same.status_code == 409 and "exists already" in same.json()["detail"]
        bad = {
            **TEMPLATE,
            "name": "Bad",
            "variants": [{**TEMPLATE["variants"][0], "text": "{{ ''.__class__ }}"}],
        }
        refused = await http.post("/v1/templates", json=bad, headers=tenant.headers)
        assert refused.status_code == 422 and "variants[0].text: line 1" in refused.json()["detail"]

        candidate = await stack_candidate(http, tenant, name="Grace Hopper", language="de-AT")
        preview = await http.post(
            f"/v1/templates/{template['id']}/preview",
            json={"candidate_id": candidate["id"], "data": {"job": {"title": "Backend"}}},
            headers=tenant.headers,
        )
        assert preview.status_code == 200, preview.text
        body = preview.json()
        assert body["language"] == "de" and body["missing"] == []
        assert body["subject"] == "Ihre Bewerbung bei Acme"
        assert body["text"].startswith("Hallo Grace,\ndanke für das Gespräch zur Stelle Backend.")
        sample = await http.post(
            f"/v1/templates/{template['id']}/preview",
            json={"language": "en", "data": {"company": {"name": "ignored"}}},
            headers=tenant.headers,
        )
        sampled = sample.json()
        # Without a candidate: the fallback, and the gaps marked and listed.
        # (the HTML part has no fallback for the first name: a gap there, marked there only).
        assert sampled["text"].startswith("Dear applicant,")
        assert sampled["missing"] == ["job.title", "candidate.first_name"]
        assert "{{ job.title }}" in sampled["text"]
        assert sampled["html"].startswith("<p>Dear {{ candidate.first_name }},</p>")
        assert sampled["subject"] == "Your application at Acme"  # our facts come first

        patched = await http.patch(
            f"/v1/templates/{template['id']}", json={"type": "update"}, headers=tenant.headers
        )
        assert patched.status_code == 200 and patched.json()["type"] == "update"
        # Default attachments: checked, listed without their bytes.
        pdf = b"%PDF-1.4 offer letter"
        good = {"filename": "offer.pdf", "content_type": "application/pdf",
                "content_base64": base64.b64encode(pdf).decode()}  # fmt: skip
        attached = await http.patch(
            f"/v1/templates/{template['id']}", json={"attachments": [good]}, headers=tenant.headers
        )
        assert attached.status_code == 200, attached.text
        assert attached.json()["attachments"] == [
            {"filename": "offer.pdf", "content_type": "application/pdf", "size": len(pdf),
             "sha256": hashlib.sha256(pdf).hexdigest()}
        ]  # fmt: skip
        for bad, words in (
            ({**good, "content_base64": "not base64!"}, "not base64"),
            ({**good, "filename": "../etc/passwd"}, "without slashes"),
            ({**good, "content_base64": base64.b64encode(b"x" * (3 * 1024 * 1024 + 1)).decode()},
             "3 MiB"),
        ):  # fmt: skip
            refused = await http.patch(
                f"/v1/templates/{template['id']}",
                json={"attachments": [bad]},
                headers=tenant.headers,
            )
            assert refused.status_code == 422 and words in refused.text, refused.text

        # Tenants never meet.
        for method, path, kw in (
            ("GET", f"/v1/templates/{template['id']}", {}),
            ("PATCH", f"/v1/templates/{template['id']}", {"json": {"type": "other"}}),
            ("POST", f"/v1/templates/{template['id']}/preview", {"json": {}}),
            ("DELETE", f"/v1/templates/{template['id']}", {}),
        ):
            answer = await http.request(method, path, headers=other.headers, **kw)
            assert answer.status_code == 404, (method, path, answer.text)
        assert (await http.get("/v1/templates", headers=other.headers)).json() == []
        entity = await http.post(
            "/v1/legal-entities", json={"name": "Acme GmbH"}, headers=tenant.headers
        )
        theirs_entity = await http.patch(
            f"/v1/legal-entities/{entity.json()['id']}",
            json={"signature_text": "Not yours"},
            headers=other.headers,
        )
        assert theirs_entity.status_code == 404
        signed = await http.patch(
            f"/v1/legal-entities/{entity.json()['id']}",
            json={"signature_html": "<p>Acme GmbH<script>x()</script></p>"},
            headers=tenant.headers,
        )
        assert signed.status_code == 200 and signed.json()["signature_html"] == "<p>Acme GmbH</p>"
        theirs = await http.post(
            f"/v1/templates/{template['id']}/preview",
            json={"candidate_id": candidate["id"]},
            headers=other.headers,
        )
        assert theirs.status_code == 404
        # A recruiter reads and previews; only settings admins write.
        recruiter = stack.user(tenant, [Permission.MESSAGING])
        assert (await http.get("/v1/templates", headers=recruiter)).status_code == 200
        writes = await http.post("/v1/templates", json={**TEMPLATE, "name": "R"}, headers=recruiter)
        assert writes.status_code == 403 and "recruiting_settings" in writes.json()["detail"]
        listed = await http.get("/v1/templates", headers=tenant.headers)
        assert [t["id"] for t in listed.json()] == [template["id"]]
        deleted = await http.delete(f"/v1/templates/{template['id']}", headers=tenant.headers)
        assert deleted.status_code == 204
        assert (
            await http.get(f"/v1/templates/{template['id']}", headers=tenant.headers)
        ).status_code == 404


async def stack_candidate(http: httpx.AsyncClient, tenant: Tenant, **fields) -> dict:
    body = {"name": "Grace Hopper", "email": f"grace.{uuid.uuid4().hex[:6]}@example.com", **fields}
    response = await http.post("/v1/candidates", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_bulk_dry_run_lists_exactly_the_candidates_that_would_fail(engine, tmp_path):
    async with api(engine, tmp_path) as stack:
        tenant = stack.tenant()
        http = stack.http
        template = (await http.post("/v1/templates", json=TEMPLATE, headers=tenant.headers)).json()
        named = await stack_candidate(http, tenant, name="Grace Hopper")
        first_only = await stack_candidate(http, tenant, name="Linus")
        body = {
            "candidate_ids": [named["id"], first_only["id"]],
            "subject": "Hello {{ candidate.first_name }}",
            "text": "Dear {{ candidate.first_name }} {{ candidate.last_name }}",
        }
        dry = await http.post("/v1/bulk-messages?dry_run=true", json=body, headers=tenant.headers)
        assert dry.status_code == 200, dry.text
        report = dry.json()
        assert report["total"] == 2 and report["would_send"] == 1
        assert [(f["candidate_id"], f["missing"]) for f in report["would_fail"]] == [
            (first_only["id"], ["candidate.last_name"])
        ]
        # The real send refuses with the same list and writes nothing; no job exists.
        real = await http.post("/v1/bulk-messages", json=body, headers=tenant.headers)
        assert real.status_code == 422
        assert real.json()["would_fail"] == report["would_fail"]
        assert real.json()["detail"].startswith("1 of 2 recipients would get")
        # From the template: job.title has no fallback, so every recipient would fail without
        # data, and none with it.
        from_template = {
            "candidate_ids": [named["id"], first_only["id"]],
            "template_id": template["id"],
        }
        without = await http.post(
            "/v1/bulk-messages?dry_run=true", json=from_template, headers=tenant.headers
        )
        assert [f["missing"] for f in without.json()["would_fail"]] == [
            ["job.title"],
            ["job.title"],
        ]
        with_data = await http.post(
            "/v1/bulk-messages?dry_run=true",
            json={**from_template, "data": {"job": {"title": "SRE"}}},
            headers=tenant.headers,
        )
        assert with_data.json()["would_fail"] == [] and with_data.json()["would_send"] == 2
        # A legal entity's template goes to that entity's candidates only.
        entity = (
            await http.post("/v1/legal-entities", json={"name": "Acme AG"}, headers=tenant.headers)
        ).json()
        scoped = await http.post(
            "/v1/templates",
            json={**TEMPLATE, "name": "Acme AG rejection", "legal_entity_id": entity["id"]},
            headers=tenant.headers,
        )
        insider = await stack_candidate(http, tenant, name="Ina Side", legal_entity_id=entity["id"])
        mixed = await http.post(
            "/v1/bulk-messages?dry_run=true",
            json={
                "candidate_ids": [insider["id"], named["id"]],
                "template_id": scoped.json()["id"],
                "data": {"job": {"title": "SRE"}},
            },
            headers=tenant.headers,
        )
        [outsider] = mixed.json()["would_fail"]
        assert (
            outsider["candidate_id"] == named["id"] and "another legal entity" in outsider["reason"]
        )
        # A template of another company is not found.
        other = stack.tenant()
        foreign = await http.post(
            "/v1/bulk-messages?dry_run=true",
            json={"candidate_ids": [named["id"]], "template_id": template["id"]},
            headers=other.headers,
        )
        assert foreign.status_code == 422


async def test_a_send_whose_run_cannot_start_leaves_nothing_behind(engine, tmp_path):
    """Temporal unreachable: 503, and the message, its attachments and its message.scheduled
    event are gone (no webhook ever tells of a message that does not exist)."""
    from tests.fakes.net import free_port

    async with api(engine, tmp_path, temporal_address=f"127.0.0.1:{free_port()}") as stack:
        tenant = stack.tenant()
        http = stack.http
        content = f"%PDF-1.4 {uuid.uuid4()}".encode()
        pdf = base64.b64encode(content).decode()
        template = await http.post(
            "/v1/templates",
            json={**TEMPLATE, "attachments": [{"filename": "a.pdf", "content_base64": pdf}]},
            headers=tenant.headers,
        )
        candidate = await stack_candidate(http, tenant)
        answer = await http.post(
            f"/v1/candidates/{candidate['id']}/messages",
            json={
                "template_id": template.json()["id"],
                "data": {"job": {"title": "SRE"}},
                "send_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            },
            headers=tenant.headers,
        )
    assert answer.status_code == 503, answer.text
    with Session(engine) as session:
        assert (
            session.exec(
                select(Message).where(Message.candidate_id == uuid.UUID(candidate["id"]))
            ).all()
            == []
        )
        assert (
            session.exec(
                select(Event).where(
                    Event.company_id == tenant.company.id, Event.type == "message.scheduled"
                )
            ).all()
            == []
        )
        digest = hashlib.sha256(content).hexdigest()
        assert session.exec(select(Attachment).where(Attachment.sha256 == digest)).all() == []


def test_a_calendar_answer_failing_dmarc_is_not_taken_as_the_candidates(engine, tmp_path):
    """Anyone can write From: the candidate. An answer whose sender fails DMARC is routed as
    mail, and the invitation keeps no answer; the same answer passing DMARC is recorded."""
    from activities.inbound import InboundActivities
    from core.inbound import parse
    from core.inbound.auth import SenderAuth
    from core.models import InboundRaw
    from core.statuses import RoutingState

    company_id = new_company(engine)
    with Session(engine, expire_on_commit=False) as session:
        candidate = Candidate(company_id=company_id, name="Ada", email="ada@example.com")
        session.add(candidate)
        session.commit()
    planned = _invite(engine, candidate.id, company_id)
    routes = InboundActivities(engine, helpers.test_settings(tmp_path))
    forged = SenderAuth("fail", "none", "fail", "reject", "forged")
    genuine = SenderAuth("pass", "pass", "pass", "reject", "aligned")
    results = []
    for auth in (forged, genuine):
        raw = reply_mail(planned["uid"], "ada@example.com", "DECLINED")
        with Session(engine, expire_on_commit=False) as session:
            row = InboundRaw(
                company_id=company_id,
                raw=raw,
                sha256=hashlib.sha256(raw).hexdigest(),
                size=len(raw),
                recipient="acme-jobs@jobs.test.example",
            )
            session.add(row)
            session.commit()
        results.append(routes.route(row.id, timedelta(days=14), (parse(raw), auth)))
        with Session(engine) as session:
            answered = session.exec(
                select(Invitation).where(Invitation.uid == planned["uid"])
            ).one()
            results.append(answered.answer)
    assert results[0].state == "routed" and results[1] is None
    assert results[2].state == RoutingState.ANSWER and results[3] == "declined"
