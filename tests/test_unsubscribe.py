"""One-click unsubscribe from bulk mail (RFC 8058): the headers a real SMTP peer receives, the
POST a mailbox provider sends, the page a candidate opens (a GET alone changes nothing), the
mailto link, and what later sends do."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from sqlmodel import Session, select

from core.events import EventType
from core.models import Event
from tests.test_bulk import start_bulk, wait_job
from tests.test_inbound import inbound_stack


def _unsubscribe_headers(message: EmailMessage) -> tuple[str, str, str]:
    """The one-click URL's path, the mailto address and its subject."""
    value = " ".join(str(message["List-Unsubscribe"]).split())
    url, mailto = re.findall(r"<([^>]+)>", value)
    address, _, query = mailto.removeprefix("mailto:").partition("?subject=")
    return urlsplit(url).path, address, unquote(query)


async def test_one_click_opts_out_of_bulk_mail_only_and_the_page_opts_back_in(
    temporal_client, engine, tmp_path
):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack, http = inbound.stack, inbound.stack.http
        tenant = stack.tenant()
        ada = await stack.candidate(tenant, name="Ada Lovelace")
        job = await start_bulk(stack, tenant, [ada["id"]])
        await wait_job(http, tenant, job["id"])
        [received] = inbound.sink.received
        path, mailto, subject = _unsubscribe_headers(received.message)
        post_header = received.message["List-Unsubscribe-Post"]

        # Opening the link (a mail scanner may) shows the page and changes nothing.
        page = await http.get(path)
        listed_after_get = (await http.get("/v1/suppressions", headers=tenant.headers)).json()
        # The provider's Unsubscribe button: a POST, exactly as Gmail sends it.
        one_click = await http.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        listed = (await http.get("/v1/suppressions", headers=tenant.headers)).json()
        # A later bulk send skips her; a single message about her application still goes.
        later = await start_bulk(stack, tenant, [ada["id"]])
        later = await wait_job(http, tenant, later["id"])
        single = await stack.send(tenant, ada["id"])
        single = await stack.wait_for_status(tenant, single["id"], {"sent", "failed"})
        # So does a transactional bulk send, without the headers.
        status_update = await start_bulk(stack, tenant, [ada["id"]], unsubscribe=False)
        status_update = await wait_job(http, tenant, status_update["id"])
        plain = inbound.sink.received[-1].message
        # The page says so, and subscribes her again.
        shown_out = await http.get(path)
        back = await http.post(
            path,
            content=b"action=subscribe",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        listed_after_opt_in = (await http.get("/v1/suppressions", headers=tenant.headers)).json()
        # Listed for another reason (an admin, a bounce): the page says so and offers nothing
        # only the company can undo.
        await http.post("/v1/suppressions", json={"address": ada["email"]}, headers=tenant.headers)
        blocked = await http.get(path)
        tried = await http.post(
            path,
            content=b"action=subscribe",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        still = (await http.get("/v1/suppressions", headers=tenant.headers)).json()
        with Session(engine) as session:
            types = {
                e.type: e.data
                for e in session.exec(select(Event).where(Event.company_id == tenant.company.id))
            }

    assert post_header == "List-Unsubscribe=One-Click"
    assert path.startswith("/u/") and mailto == inbound.hosted(tenant)
    assert subject.startswith("unsubscribe ") and subject.split()[1] == path.removeprefix("/u/")
    assert page.status_code == 200 and "Unsubscribe" in page.text
    assert listed_after_get == []
    assert one_click.status_code == 200
    assert [(s["address"], s["reason"]) for s in listed] == [(ada["email"], "unsubscribed")]
    assert later["counts"]["skipped"] == 1 and later["counts"]["sent"] == 0
    assert single["status"] == "sent"
    assert status_update["counts"]["sent"] == 1 and plain["List-Unsubscribe"] is None
    assert "You are unsubscribed" in shown_out.text and "Subscribe again" in shown_out.text
    assert back.status_code == 303
    assert listed_after_opt_in == []
    assert "sends no mail to this address" in blocked.text
    assert "Subscribe again" not in blocked.text and "<form" not in blocked.text
    assert tried.status_code == 303 and "notice" not in tried.headers["location"]
    assert [s["reason"] for s in still] == ["manual"]
    assert types[EventType.CANDIDATE_OPTED_OUT.value]["via"] == "one_click"
    assert types[EventType.CANDIDATE_OPTED_IN.value]["candidate_id"] == ada["id"]


async def test_the_mailto_link_opts_out_and_a_changed_link_does_nothing(
    temporal_client, engine, tmp_path
):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack, http = inbound.stack, inbound.stack.http
        a, b = stack.tenant(name="A Corp"), stack.tenant(name="B Corp")
        grace = await stack.candidate(a, name="Grace")
        job = await start_bulk(stack, a, [grace["id"]])
        await wait_job(http, a, job["id"])
        path, mailto, subject = _unsubscribe_headers(inbound.sink.received[0].message)
        token = path.removeprefix("/u/")
        tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
        changed = await http.post(
            f"/u/{tampered}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        changed_page = await http.get(f"/u/{tampered}")
        # The same token mailed to another company's hosted address names nobody there.
        for to in (inbound.hosted(b), mailto):
            mail = EmailMessage()
            mail["From"] = grace["email"]
            mail["To"] = to
            mail["Subject"] = subject
            mail["Message-ID"] = f"<unsub-{to}@example.com>"
            mail.set_content("This message will unsubscribe you.")
            await inbound.deliver(mail.as_bytes(), to)
        await inbound.wait_routed(a, b)
        listed_a = (await http.get("/v1/suppressions", headers=a.headers)).json()
        listed_b = (await http.get("/v1/suppressions", headers=b.headers)).json()
        thread = await inbound.messages(a, grace["id"])
        await inbound.wait_runs_ended(a)

    assert changed.status_code == 404 and changed_page.status_code == 404
    assert [(s["address"], s["reason"]) for s in listed_a] == [(grace["email"], "unsubscribed")]
    assert listed_b == []
    request = [m for m in thread if m["direction"] == "inbound"]
    assert [m["kind"] for m in request] == ["auto_reply"]
    assert len(inbound.sink.received) == 1  # the bulk message; nothing answers the request


def test_a_bulk_message_composed_again_keeps_its_unsubscribe_headers_and_files(engine, tmp_path):
    """A bulk message whose sender changed before it went is composed again by the single-send
    path: it keeps one-click unsubscribe (and the job's files' form), as planning wrote it."""
    from activities.accounts import Accounts
    from activities.send import SendActivities
    from core.mail import bulk_boundary, new_message_id
    from core.models import BulkJob, Candidate, Message
    from core.security import secret_box
    from tests.helpers import new_company
    from tests.helpers import test_settings as make_settings

    settings = make_settings(tmp_path, public_url="https://rm.example")
    company_id = new_company(engine)
    with Session(engine, expire_on_commit=False) as session:
        candidate = Candidate(company_id=company_id, name="Grace", email="grace@example.com")
        job = BulkJob(
            company_id=company_id,
            subject="News",
            text="Hello",
            unsubscribe=True,
            files=[{"filename": "a.pdf", "content_type": "application/pdf", "size": 1}],
        )
        session.add_all([candidate, job])
        session.flush()
        message = Message(
            company_id=company_id,
            candidate_id=candidate.id,
            direction="outbound",
            status="queued",
            kind="mail",
            from_address="",
            from_name="",
            to_addresses=[candidate.email],
            subject="News",
            text="Hello",
            message_id_header=new_message_id("jobs.test.example"),
            bulk_job_id=job.id,
        )
        session.add(message)
        session.commit()
    send = SendActivities(engine, settings, Accounts(engine, settings, secret_box(settings)))
    mail = send.recompose(str(message.id)).mail
    parsed = email.message_from_bytes(mail.mime, policy=email.policy.default)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://rm.example/u/" in str(parsed["List-Unsubscribe"])
    assert parsed.get_content_type() == "multipart/mixed"
    assert parsed.get_boundary() == bulk_boundary(job.id)  # the job's files go in when sent
