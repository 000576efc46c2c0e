"""The domain rules that used to live in activities, tested on the suite's database without
Temporal, a worker or the API: the sender choice, composing once, the message lifecycle, bulk
planning, routing a reply, the ownership refusal and the erasure steps. Each runs in well
under a second (`make test-fast`)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, col, select

from core.connections import ownership
from core.deliverability import suppression
from core.inbound import routing
from core.models import (
    AddressOwner,
    BulkJob,
    Candidate,
    Company,
    Connection,
    Event,
    InboundRaw,
    LegalEntity,
    Message,
    User,
    utcnow,
)
from core.privacy import erasure as erasing
from core.privacy import register_erasure
from core.security import secret_box
from core.send import compose, lifecycle, senders
from core.statuses import InboundState, MessageKind, MessageStatus, SuppressionReason
from tests.helpers import new_company
from tests.helpers import test_settings as settings_for


@pytest.fixture
def settings(tmp_path):
    return settings_for(tmp_path)


@pytest.fixture(autouse=True)
def no_stranded_rows(engine):
    """These tests write messages `queued` or `scheduled` with no run behind them, in the
    database the process's other tests share: a sweeper test would start runs for them. Each
    test's companies' unsent messages end `cancelled` after it."""
    with Session(engine) as session:
        known = set(session.exec(select(Company.id)).all())
    yield
    with Session(engine) as session:
        ours = [c for c in session.exec(select(Company.id)).all() if c not in known]
        if ours:
            session.execute(
                update(Message)
                .where(
                    col(Message.company_id).in_(ours),
                    col(Message.status).in_(["queued", "scheduled", "sending"]),
                )
                .values(status="cancelled")
            )
            session.commit()


def _candidate(session: Session, company_id: uuid.UUID, **fields) -> Candidate:
    candidate = Candidate(
        company_id=company_id,
        name=fields.pop("name", "Cara Candidate"),
        email=fields.pop("email", f"cara.{uuid.uuid4().hex[:8]}@mail.example"),
        **fields,
    )
    session.add(candidate)
    session.flush()
    return candidate


def _message(session: Session, candidate: Candidate, **fields) -> Message:
    message = Message(
        company_id=candidate.company_id,
        candidate_id=candidate.id,
        direction=fields.pop("direction", "outbound"),
        status=fields.pop("status", MessageStatus.QUEUED),
        subject=fields.pop("subject", "Your interview"),
        text=fields.pop("text", "Could you come on Tuesday?"),
        message_id_header=f"<{uuid.uuid4().hex}@jobs.test.example>",
        **fields,
    )
    session.add(message)
    session.flush()
    return message


def _events(session: Session, message: Message) -> list[str]:
    rows = session.exec(
        select(Event).where(Event.company_id == message.company_id).order_by(col(Event.id))
    ).all()
    return [e.type for e in rows if e.data.get("message_id") == str(message.id)]


# -- the sender choice ----------------------------------------------------------------------


def test_the_sender_is_the_entitys_connection_named_after_the_entity(engine, settings):
    company_id = new_company(engine)
    with Session(engine) as session:
        company = session.get(Company, company_id)
        entity = LegalEntity(company_id=company_id, name="Acme GmbH")
        session.add(entity)
        session.flush()
        session.add(
            Connection(
                company_id=company_id,
                legal_entity_id=entity.id,
                kind="smtp",
                custom_address="jobs@acme-gmbh.example",
                status="active",
            )
        )
        in_entity = _candidate(session, company_id, legal_entity_id=entity.id)
        elsewhere = _candidate(session, company_id)
        chosen = senders.choose(session, settings, _message(session, in_entity))
        fallback = senders.choose(session, settings, _message(session, elsewhere))
    assert (chosen.address, chosen.name, chosen.source) == (
        "jobs@acme-gmbh.example",
        "Acme GmbH",
        "entity",
    )
    assert (fallback.transport, fallback.source) == ("platform", "platform")
    assert fallback.address == settings.hosted_address(company.slug)
    assert fallback.name == "Acme"


def test_an_employee_named_sender_uses_the_employees_name(engine, settings):
    company_id = new_company(engine)
    with Session(engine) as session:
        user = session.exec(select(User).where(User.company_id == company_id)).one()
        candidate = _candidate(session, company_id)
        message = _message(session, candidate, sender_user_id=user.id, sender_name_mode="employee")
        chosen = senders.choose(session, settings, message)
    assert chosen.name == "Ada"
    assert compose.without_name(chosen).name == ""


# -- composing once, and the lifecycle ----------------------------------------------------


def test_composing_stores_the_bytes_and_moves_queued_to_sending(engine, settings):
    company_id = new_company(engine)
    box = secret_box(settings)
    with Session(engine) as session:
        candidate = _candidate(session, company_id)
        message = _message(session, candidate)
        sender = senders.choose(session, settings, message)
        composed = compose.compose_into(session, box, settings, message, sender)
        assert message.raw_mime == composed.mime
        assert message.status == MessageStatus.SENDING
        assert composed.envelope_to == [candidate.email]
        assert b"Could you come on Tuesday?" in composed.mime


def test_a_suppressed_recipient_is_refused_before_any_attempt(engine, settings):
    company_id = new_company(engine)
    with Session(engine) as session:
        candidate = _candidate(session, company_id)
        suppression.suppress(
            session, company_id, candidate.email, SuppressionReason.COMPLAINT, "spam report"
        )
        message = _message(session, candidate)
        sender = senders.choose(session, settings, message)
        with pytest.raises(compose.Suppressed, match=r"complain|spam"):
            compose.compose_into(session, secret_box(settings), settings, message, sender)
        assert message.raw_mime is None and message.status == MessageStatus.QUEUED


def test_sent_writes_its_event_and_is_never_downgraded(engine):
    company_id = new_company(engine)
    with Session(engine) as session:
        message = _message(session, _candidate(session, company_id), status="sending")
        lifecycle.begin_attempt(message)
        message.error = "421 try again later. Retrying."  # an earlier attempt's
        going = lifecycle.going(session, message)
        session.add(message)
        session.commit()
        lifecycle.sent(engine, going, "<provider-id>")  # its own transaction, by primary key
        session.refresh(message)
        assert (message.status, message.error, message.attempt_started_at) == ("sent", None, None)
        assert message.provider_message_id == "<provider-id>" and message.sent_at is not None
        status, error = lifecycle.outcome(session, message, "failed", "it timed out")
        assert (status, error, message.attempts) == ("sent", None, 1)
        assert _events(session, message) == ["message.sent"]
        [event] = session.exec(
            select(Event).where(
                Event.type == "message.sent", Event.candidate_id == message.candidate_id
            )
        ).all()
        assert event.data == {
            "message_id": str(message.id),
            "candidate_id": str(message.candidate_id),
            "direction": "outbound",
            "status": "sent",
        }
        assert event.personal == {
            "sender_address": message.from_address,
            "candidate_name": going.candidate_name,
            "subject": "Your interview",
        }
        assert going.candidate_name  # the candidate's, read when the attempt began


def test_a_failed_outcome_keeps_the_reason_and_a_cancelled_one_stays(engine):
    company_id = new_company(engine)
    with Session(engine) as session:
        candidate = _candidate(session, company_id)
        failing = _message(session, candidate, status="sending")
        cancelled = _message(session, candidate, status="cancelled")
        reason = lifecycle.gave_up(3, timedelta(hours=24), "550 no such user")
        assert lifecycle.outcome(session, failing, "failed", reason) == ("failed", reason)
        assert lifecycle.outcome(session, cancelled, "failed", "late")[0] == "cancelled"
        assert reason == "Gave up after 3 attempts over 24 hours. Last problem: 550 no such user"
        assert _events(session, failing) == ["message.failed"]
        assert _events(session, cancelled) == []


def test_only_a_message_that_went_out_can_bounce(engine):
    company_id = new_company(engine)
    with Session(engine) as session:
        candidate = _candidate(session, company_id)
        sent = _message(session, candidate, status="sent")
        queued = _message(session, candidate, status="queued")
        assert lifecycle.bounced(session, sent, "550 5.1.1 unknown")
        assert not lifecycle.bounced(session, queued, "550 5.1.1 unknown")
        assert (sent.status, queued.status) == ("bounced", "queued")
        assert _events(session, sent) == ["message.bounced"]


def test_a_scheduled_message_cancels_once_and_not_after_its_release(engine):
    company_id = new_company(engine)
    with Session(engine) as session:
        candidate = _candidate(session, company_id)
        early = _message(session, candidate, status="scheduled")
        late = _message(session, candidate, status="scheduled")
        session.commit()
        assert lifecycle.cancel_scheduled(session, early, "Cancelled by Ada.")
        assert not lifecycle.cancel_scheduled(session, early, "again")
        assert lifecycle.release(session, late.id)
        assert not lifecycle.cancel_scheduled(session, late, "too late")
        session.refresh(late)
        assert (early.status, late.status) == ("cancelled", "queued")


# -- bulk planning ------------------------------------------------------------------------------


def test_planning_composes_each_recipient_once_and_skips_the_suppressed(engine, settings):
    company_id = new_company(engine)
    box = secret_box(settings)
    with Session(engine, expire_on_commit=False) as session:
        job = BulkJob(
            company_id=company_id, subject="Open day", text="Come", total=3, unsubscribe=True
        )
        session.add(job)
        session.flush()
        people = [_candidate(session, company_id) for _ in range(3)]
        suppression.suppress(
            session, company_id, people[2].email, SuppressionReason.HARD_BOUNCE, "550"
        )
        messages = [
            _message(session, c, bulk_job_id=job.id, subject="Open day", kind="bulk")
            for c in people
        ]
        session.commit()
        batches = _plan(session, settings, box, job, batch_size=1)
        again = _plan(session, settings, box, job, batch_size=1)
        for m in messages:
            session.refresh(m)
    assert (batches, again) == (2, 2)  # the second planning keeps the first's batches
    assert [m.status for m in messages] == ["queued", "queued", "skipped"]
    assert [m.bulk_batch for m in messages[:2]] == [0, 1]
    assert all(b"List-Unsubscribe-Post" in (m.raw_mime or b"") for m in messages[:2])
    assert messages[2].raw_mime is None and "suppression list" in (messages[2].error or "")


def _plan(session, settings, box, job, batch_size):
    from core import bulk

    planned = bulk.plan(session, settings, box, str(job.id), batch_size)
    session.commit()
    return planned


# -- routing a reply --------------------------------------------------------------------------


def _stored(session: Session, company_id: uuid.UUID, raw: bytes) -> InboundRaw:
    row = InboundRaw(
        company_id=company_id,
        recipient="acme-jobs@jobs.test.example",
        mail_from="",
        raw=raw,
        sha256=uuid.uuid4().hex,
        state=InboundState.STORED,
    )
    session.add(row)
    session.commit()
    return row


def test_a_reply_is_routed_to_the_candidate_of_its_thread(engine, settings):
    company_id = new_company(engine)
    box = secret_box(settings)
    with Session(engine, expire_on_commit=False) as session:
        candidate = _candidate(session, company_id, email="cara@mail.example")
        sent = _message(session, candidate, status="sent")
        session.commit()
        reply = (
            f"From: Cara <cara@mail.example>\r\nTo: acme-jobs@jobs.test.example\r\n"
            f"Subject: Re: Your interview\r\nMessage-ID: <r1.{uuid.uuid4().hex}@mail.example>\r\n"
            f"In-Reply-To: {sent.message_id_header}\r\n\r\nTuesday works.\r\n"
        ).encode()
        raw = _stored(session, company_id, reply)
        routed = routing.route(
            session, settings, box, box.signing_keys(), raw.id, timedelta(days=14)
        )
        session.commit()
        again = routing.route(
            session, settings, box, box.signing_keys(), raw.id, timedelta(days=14)
        )
    assert (routed.state, routed.candidate_id, routed.kind) == (
        "routed",
        str(candidate.id),
        MessageKind.MAIL,
    )
    assert again.state == "routed" and again.message_id == routed.message_id  # idempotent


def test_mail_from_nobody_known_is_unassigned_with_the_reason(engine, settings):
    company_id = new_company(engine)
    box = secret_box(settings)
    with Session(engine, expire_on_commit=False) as session:
        raw = _stored(
            session,
            company_id,
            b"From: stranger@else.example\r\nTo: acme-jobs@jobs.test.example\r\n"
            b"Subject: Hello\r\nMessage-ID: <s1@else.example>\r\n\r\nAny jobs?\r\n",
        )
        routed = routing.route(
            session, settings, box, box.signing_keys(), raw.id, timedelta(days=14)
        )
        message = session.get(Message, uuid.UUID(routed.message_id or ""))
    assert routed.candidate_id is None
    assert message is not None and message.match_reason == "none"
    assert "stranger@else.example" in (message.match_detail or "")


# -- ownership ------------------------------------------------------------------------------------


def test_an_address_another_company_proved_is_refused(engine, settings):
    first, second = new_company(engine), new_company(engine)
    with Session(engine) as session:
        theirs, mine, hosted = (
            Connection(company_id=company, kind="smtp", custom_address=address, status="testing")
            for company, address in (
                (first, "jobs@shared.example"),
                (second, "jobs@shared.example"),
                (second, "x-jobs@jobs.test.example"),
            )
        )
        session.add_all([theirs, mine, hosted])
        session.flush()
        assert ownership.refusal(session, settings, mine) is None
        session.add(
            AddressOwner(address="jobs@shared.example", company_id=first, connection_id=theirs.id)
        )
        session.flush()
        assert "another Recruitmail account" in (ownership.refusal(session, settings, mine) or "")
        assert ownership.refusal(session, settings, theirs) is None
        assert ownership.refusal(session, settings, hosted)  # a hosted address, never custom


# -- erasure ------------------------------------------------------------------------------------


def test_erasure_cancels_what_was_not_sent_and_erases_the_rest(engine, settings):
    company_id = new_company(engine)
    with Session(engine, expire_on_commit=False) as session:
        candidate = _candidate(session, company_id, name="Cara Private")
        sent = _message(session, candidate, status="sent", subject="Offer for Cara")
        waiting = _message(session, candidate, status="scheduled")
        erasure = register_erasure(session, candidate, reason="request")
        session.commit()
        cancelled, in_flight, woken = erasing.stop_sends(session, erasure, candidate)
        done = erasing.erase_batch(session, erasure, candidate, 100)
        erasing.finish(session, erasure, candidate, 100)
        session.commit()
        for row in (sent, waiting, candidate):
            session.refresh(row)
    assert (cancelled, in_flight, woken) == (1, 0, [waiting.run_id])
    assert done == 2 and erasure.status == "done"
    assert waiting.status == "cancelled" and sent.status == "sent"
    assert sent.subject == "" and sent.erased_at is not None
    assert candidate.name != "Cara Private" and candidate.email == ""
    assert candidate.erased_at is not None
    assert utcnow() - candidate.erased_at < timedelta(minutes=1)


def test_a_recipient_suppressed_before_a_recompose_fails_the_send_without_retries(engine, settings):
    """The sender changed after composing, and meanwhile the recipient went on the list: the
    send activity's recompose refuses it for good (a retry could only refuse it again)."""
    from temporalio.exceptions import ApplicationError

    from activities.accounts import Accounts
    from activities.send import SendActivities
    from contracts.send import SUPPRESSED

    company_id = new_company(engine)
    with Session(engine, expire_on_commit=False) as session:
        candidate = _candidate(session, company_id)
        message = _message(session, candidate)
        suppression.suppress(
            session, company_id, candidate.email, SuppressionReason.HARD_BOUNCE, "550"
        )
        session.commit()
    box = secret_box(settings)
    activities = SendActivities(engine, settings, Accounts(engine, settings, box))
    with pytest.raises(ApplicationError) as refused:
        activities.recompose(str(message.id))
    assert refused.value.type == SUPPRESSED and refused.value.non_retryable


def test_the_receiver_remembers_hosted_companies_only_once_found(engine, settings):
    """RCPT's lookup: a hosted address's company is remembered once found (a slug names one
    company for good); an address not found yet is asked again (a company created later is
    found), and custom addresses are always asked (one can move to another company)."""
    from worker.inbound_smtp import InboundHandler

    receiver = InboundHandler(settings, engine, client=None)  # type: ignore[arg-type]
    company_id = new_company(engine)
    with Session(engine) as session:
        slug = session.get_one(Company, company_id).slug
    domain = settings.platform_mail_domain
    later = f"later{uuid.uuid4().hex[:8]}"

    assert receiver.remembered(f"{slug}-jobs@{domain}") is None  # not asked yet
    assert receiver._lookup(f"{slug}-jobs@{domain}") == company_id
    assert receiver.remembered(f"{slug}-jobs+abc@{domain}") == company_id  # a reply-to token
    assert receiver._lookup(f"{later}-jobs@{domain}") is None
    assert receiver.remembered(f"{later}-jobs@{domain}") is None
    with Session(engine) as session:
        session.add(Company(name="Later", slug=later))
        session.commit()
    assert receiver._lookup(f"{later}-jobs@{domain}") is not None  # found once it exists
    assert receiver._lookup(f"jobs@{slug}.example") is None
    assert receiver.remembered(f"jobs@{slug}.example") is None
    assert receiver.remembered(f"_ops-jobs@{domain}") is None


def test_a_bulk_sends_conversations_are_found_or_made_once_each(engine):
    """conversations_of: a candidate's existing conversation is kept, the others' are made in
    one statement, and asking again (or one at a time) finds the same ones."""
    from core.inbound import tokens
    from core.models import ConversationToken

    company_id, other_company = new_company(engine), new_company(engine)
    with Session(engine, expire_on_commit=False) as session:
        known, *new = [_candidate(session, company_id) for _ in range(4)]
        elsewhere = _candidate(session, other_company)
        existing = tokens.conversation_of(session, company_id, known.id)
        theirs = tokens.conversation_of(session, other_company, elsewhere.id)
        session.commit()
        ids = [known.id, *[c.id for c in new], new[0].id]  # a repeat counts once
        first = tokens.conversations_of(session, company_id, ids)
        session.commit()
        again = tokens.conversations_of(session, company_id, ids)
        one_by_one = {c: tokens.conversation_of(session, company_id, c) for c in ids}
        stored = session.exec(
            select(ConversationToken).where(ConversationToken.company_id == company_id)
        ).all()
    assert set(first) == set(ids) and first[known.id] == existing
    assert len(set(first.values())) == 4 and theirs not in first.values()
    assert again == first == one_by_one
    assert len(stored) == 4 and {t.candidate_id for t in stored} == set(ids)
