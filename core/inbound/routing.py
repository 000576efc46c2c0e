"""Routing stored inbound mail: one message, parsed, classified, matched to a candidate (or
left Unassigned, with the reason) and stored, in the caller's transaction. The rules of the
inbound capability that need the database; activities/inbound.py loads, calls and records."""

from __future__ import annotations

import email.policy
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_bytes

from sqlalchemy import func
from sqlmodel import Session, col, select

from core import attachments as files_at_rest
from core import events
from core.connections import ownership, round_trip
from core.connections.round_trip import bounce_explanation, held_detail, token_hash, verified_detail
from core.deliverability import checks, suppression, unsubscribe
from core.events import EventType
from core.inbound import ParsedMail, candidates, parse, tokens
from core.inbound.auth import NOT_CHECKED, SenderAuth
from core.inbound.html import stored_safe
from core.inbound_paths import paths as inbound_paths
from core.models import (
    Attachment,
    Candidate,
    Company,
    Connection,
    Direction,
    InboundRaw,
    Message,
    User,
    utcnow,
)
from core.security import SecretBox
from core.send import lifecycle
from core.settings import Settings
from core.statuses import (
    InboundState,
    MatchReason,
    MessageKind,
    MessageStatus,
    RedirectStatus,
    RoutingState,
    StepStatus,
    SuppressionReason,
)
from core.templates import invitations

# Outbound messages a bounce may still change: a bounce can overtake our own `sent` write.


@dataclass
class Routed:
    """What routing did, in ids and facts only (the workflow's result holds the same)."""

    state: str  # a core.statuses.RoutingState
    message_id: str | None = None
    candidate_id: str | None = None
    match_reason: str | None = None
    kind: str = "mail"  # a core.statuses.MessageKind
    bounced_message_id: str | None = None
    # A connection test's message came back (state `check`): the connection it verified, and
    # the run waiting for it (a setup's or a re-check's; empty: the setup's).
    connection_id: str | None = None
    check_workflow_id: str | None = None
    # The check bounced: the redirect of a live connection stopped working; tell the admins.
    tell_admins: bool = False


def route(
    session: Session,
    settings: Settings,
    box: SecretBox,
    keys: list[bytes],
    inbound_id: uuid.UUID,
    grace: timedelta,
    prepared: tuple[ParsedMail, SenderAuth] | None = None,
    workflow_id: str | None = None,
) -> Routed:
    """Route one stored message, in the caller's transaction: a round trip's check message or
    its bounce, a forwarding confirmation, a duplicate, an answer to an interview invitation;
    otherwise the candidate it belongs to (the reply-to token, then the thread, then the
    sender's address; core/inbound/candidates.py), bounces and complaints noted, and the
    message stored with its attachments, its safe HTML and message.received."""
    raw = session.get(InboundRaw, inbound_id)
    if raw is None or raw.company_id is None:
        raise LookupError(f"inbound message {inbound_id} is not stored")
    company_id = raw.company_id
    if raw.state != InboundState.STORED:
        return _already_routed(session, raw)
    if workflow_id:
        raw.workflow_id = workflow_id  # the run routing it (a batch's)

    parsed, auth = prepared or (parse(raw.raw), NOT_CHECKED)
    bounce_of = round_trip.bounce_key(raw.recipient)
    if bounce_of is not None:
        return _consume_check_bounce(session, raw, parsed, bounce_of, settings)
    # google.com publishes DMARC p=reject: a confirmation failing it is someone else's.
    if parsed.forwarding_code is not None and auth.verified is not False:
        return _consume_forwarding_code(session, raw, parsed)
    if parsed.check_token is not None:
        return _consume_check(session, raw, parsed.check_token, settings)
    if parsed.send_test:
        raw.state = InboundState.CHECK  # a send leg's message: shown to nobody
        _record_dkim(session, raw, parsed)
        return Routed(state=RoutingState.CHECK)
    existing = session.exec(
        select(Message).where(
            Message.company_id == raw.company_id,
            Message.message_id_header == parsed.message_id,
        )
    ).first()
    if existing is not None:
        raw.state = InboundState.DUPLICATE
        raw.message_id = existing.id
        return Routed(
            state="duplicate",
            message_id=str(existing.id),
            candidate_id=_str(existing.candidate_id),
            match_reason=existing.match_reason,
            kind=existing.kind,
        )

    answered = _invitation_answer(session, raw, parsed, auth)
    if answered is not None:
        return answered
    router = _Router(session, raw.company_id, raw.received_at, grace, settings)
    candidate_id, reason, detail, thread_message = router.match(
        parsed, auth, token_candidate=_token_candidate(session, keys, raw)
    )
    bounced = None
    if parsed.kind == MessageKind.BOUNCE and parsed.bounce is not None:
        bounced = _mark_bounce(session, thread_message, parsed, settings.soft_bounce_limit)
    if parsed.complaint is not None:
        _note_complaint(session, thread_message, parsed)
    if parsed.kind == MessageKind.MAIL:
        _note_unsubscribe(session, box, company_id, parsed)
    message = _inbound_message(company_id, raw, parsed, candidate_id, reason, detail)
    message.received_via = raw.channel
    message.sender_auth = auth.summary() if auth is not NOT_CHECKED else None
    message.sender_verified = auth.verified
    session.add(message)
    session.flush()  # the message row first: attachments refer to it
    inline: dict[str, str] = {}
    for item in parsed.attachments:
        attachment = Attachment(
            message_id=message.id,
            original_sender=item.original_sender,
            content_id=item.content_id,
            **files_at_rest.stored_fields(
                box,
                uuid.uuid4(),
                item.filename,
                item.content_type,
                item.sha256,
                item.content,
            ),
        )
        session.add(attachment)
        if item.content_id:
            inline.setdefault(item.content_id, str(attachment.id))
    _store_safe_html(message, inline)
    raw.state = InboundState.ROUTED
    raw.message_id = message.id
    _received_events(session, message, bounced)
    session.flush()  # a duplicate Message-ID surfaces here, before commit
    return Routed(
        state="routed",
        message_id=str(message.id),
        candidate_id=_str(candidate_id),
        match_reason=reason,
        kind=parsed.kind,
        bounced_message_id=_str(bounced.id) if bounced is not None else None,
    )


def _token_candidate(session: Session, keys: list[bytes], raw: InboundRaw) -> uuid.UUID | None:
    """The candidate of the reply-to token in the address the message was sent to."""
    if raw.company_id is None:
        return None
    return tokens.candidate_of(session, keys, raw.company_id, raw.recipient)


class _Router:
    """The routing rules (docs/inbound.md, point 3), within one company."""

    def __init__(
        self,
        session: Session,
        company_id: uuid.UUID,
        received_at: datetime,
        grace: timedelta,
        settings: Settings,
    ) -> None:
        self.session = session
        self.company_id = company_id
        self.received_at = received_at
        self.grace = grace
        self.settings = settings

    def match(
        self,
        parsed: ParsedMail,
        auth: SenderAuth = NOT_CHECKED,
        *,
        token_candidate: uuid.UUID | None = None,
    ) -> tuple[uuid.UUID | None, str, str, Message | None]:
        """(candidate id, match reason, detail, the outbound message replied to)."""
        sent = self._our_message(parsed.thread_ids)
        if token_candidate is not None and not self._erased(token_candidate):
            # Sent to the conversation's reply-to address: its token says whose it is, even
            # when the client dropped In-Reply-To and References.
            return (
                token_candidate,
                MatchReason.TOKEN,
                "sent to the conversation's reply-to address",
                sent,
            )
        erased = sent is not None and self._erased(sent.candidate_id)
        if erased:
            # Mail for an erased candidate never joins the erased record: it is handled as
            # mail from an unknown sender, and nothing about it names the candidate.
            sent = None
        if sent is not None and sent.candidate_id is not None:
            return sent.candidate_id, MatchReason.THREAD, f"reply to {sent.message_id_header}", sent

        own = self._own_addresses()
        prefix = ""
        if parsed.forwarded_from and parsed.from_address.lower() in own:
            # A colleague (or one of the company's own addresses) forwarded a candidate's mail:
            # route by the author of what was forwarded.
            prefix = f"forwarded by {parsed.from_address}; original sender {parsed.forwarded_from}"
            senders = [parsed.forwarded_from]
        else:
            parsed.forwarded_from = parsed.forwarded_from_name = ""  # only a colleague forwards
            senders = [a for a in parsed.sender_addresses if a.lower() not in own]
        if not auth.routes_by_sender:
            # Anyone can write a candidate's address in From: a domain that asks receivers to
            # distrust mail failing DMARC gets no routing by its sender alone.
            unverified = f"sender not verified: {auth.detail}"
            return None, MatchReason.NONE, f"{unverified}; not a reply to our mail", sent
        for address in senders:
            candidate = self._candidate_by_address(address)
            if candidate is not None:
                detail = f"{prefix}; sender {address}" if prefix else f"sender {address}"
                return candidate.id, MatchReason.SENDER, detail, sent
        why = [prefix] if prefix else []
        if erased:
            why.append("a reply to a message whose candidate's data was erased")
        else:
            why.append("no Message-ID we sent in In-Reply-To or References")
        if senders:
            why.append(
                f"no candidate with an open (or recently closed) application at "
                f"{', '.join(senders[:3])}"
            )
        else:
            why.append("no sender address outside the company's own")
        return None, MatchReason.NONE, "; ".join(why), sent

    def _our_message(self, ids: list[str]) -> Message | None:
        return candidates.our_message(self.session, self.company_id, ids)

    def _erased(self, candidate_id: uuid.UUID | None) -> bool:
        if candidate_id is None:
            return False
        candidate = self.session.get(Candidate, candidate_id)
        return candidate is not None and candidate.erasure_requested_at is not None

    def _own_addresses(self) -> set[str]:
        """Addresses of the company itself: mail from these was forwarded, not written."""
        slug = self.session.exec(select(Company.slug).where(Company.id == self.company_id)).one()
        own = {self.settings.hosted_address(slug).lower()}
        own.update(
            a.lower()
            for a in self.session.exec(
                select(Connection.custom_address).where(Connection.company_id == self.company_id)
            )
        )
        own.update(
            a.lower()
            for a in self.session.exec(select(User.email).where(User.company_id == self.company_id))
        )
        return own

    def _candidate_by_address(self, address: str) -> Candidate | None:
        return candidates.candidate_by_address(
            self.session, self.company_id, address, self.received_at, self.grace
        )


def _store_safe_html(message: Message, inline: dict[str, str]) -> None:
    """The HTML made safe to show once, now, rather than on every read (within the parsing
    budget: a message over it has `html_note` instead)."""
    if message.html is None or message.html_note is not None:
        return
    message.html_safe = stored_safe(message.html, inline)
    if message.reply_html is not None:
        message.reply_html_safe = stored_safe(message.reply_html, inline)


def _received_events(session: Session, message: Message, bounced: Message | None) -> None:
    """message.received (and message.bounced for the message a bounce marked), in the routing
    transaction."""
    events.message_event(
        session,
        message,
        EventType.MESSAGE_RECEIVED,
        unassigned=message.candidate_id is None,
        match_reason=message.match_reason,
        kind=message.kind,
    )
    if bounced is not None:
        lifecycle.tell_bounced(session, bounced, bounce_message_id=str(message.id))


def _mark_bounce(
    session: Session, sent: Message | None, parsed: ParsedMail, soft_bounce_limit: int
) -> Message | None:
    """Mark the outbound message bounced, flag the candidate's address, and note the bounce on
    the company's suppression list (a report about a message we sent, for its recipient)."""
    report = parsed.bounce
    if sent is None or report is None:
        return None
    lifecycle.bounced(session, sent, report.describe(), tell=False)
    candidate = session.get(Candidate, sent.candidate_id) if sent.candidate_id else None
    if candidate is not None and (
        report.recipient is None or report.recipient.lower() == candidate.email.lower()
    ):
        candidate.email_bounced_at = utcnow()
        candidate.email_bounce_detail = report.describe()
    failed = suppression.reported_recipient(sent.to_addresses, report.recipient)
    if failed is not None:
        suppression.note_bounce(
            session,
            sent.company_id,
            failed,
            permanent=not report.gave_up,
            detail=report.diagnostic or report.status or "",
            limit=soft_bounce_limit,
        )
    return sent


def sending_connection(
    session: Session, company_id: uuid.UUID | None, address: str
) -> Connection | None:
    """The company's connection sending from `address` (a send leg's message is from it)."""
    if company_id is None or not address:
        return None
    return session.exec(
        select(Connection).where(
            Connection.company_id == company_id,
            func.lower(Connection.custom_address) == address.lower(),
            col(Connection.status).not_in(list(ownership.LET_GO)),
        )
    ).first()


def _record_dkim(session: Session, raw: InboundRaw, parsed: ParsedMail) -> None:
    """The send leg's test message came back: its DKIM signatures, and the deliverability
    report made with them, on its connection (connection.deliverability_changed when the
    report's status changed)."""
    connection = sending_connection(session, raw.company_id, parsed.from_address)
    if connection is None:
        return
    at = raw.received_at.isoformat()
    connection.dkim_check = {"checked_at": at, "signatures": parsed.dkim_signatures}
    session.add(connection)
    if parsed.deliverability is not None:
        checks.record(session, connection, parsed.deliverability, at)


_CALENDAR_PART = re.compile(rb"content-type:\s*(text/calendar|application/ics)", re.IGNORECASE)


def _invitation_answer(
    session: Session, raw: InboundRaw, parsed: ParsedMail, auth: SenderAuth
) -> Routed | None:
    """A candidate's calendar answering an interview invitation (an iTIP REPLY): recorded on
    the invitation and its message, with invitation.answered; never a mail in Unassigned. One
    whose sender fails DMARC is not taken as the candidate's answer (it is routed as mail)."""
    if raw.company_id is None or auth.verified is False or not _CALENDAR_PART.search(raw.raw):
        return None
    reply = invitations.read_reply(message_from_bytes(raw.raw, policy=email.policy.default))
    if reply is None:
        return None
    row = invitations.record_answer(session, raw.company_id, reply, parsed.sender_addresses)
    if row is None:
        return None  # not one of this company's invitations, or not from its candidate
    raw.state = InboundState.ANSWER
    raw.message_id = row.message_id
    return Routed(
        state=RoutingState.ANSWER,
        message_id=_str(row.message_id),
        candidate_id=_str(row.candidate_id),
        kind=MessageKind.MAIL,
    )


def _note_complaint(session: Session, sent: Message | None, parsed: ParsedMail) -> None:
    """A spam complaint about a message we sent: its recipient goes on the suppression list."""
    complaint = parsed.complaint
    if sent is None or complaint is None or sent.direction != Direction.OUTBOUND:
        return
    who = suppression.reported_recipient(sent.to_addresses, complaint.recipient)
    if who is None:
        return
    reporter = parsed.from_address.rpartition("@")[2] or "a mailbox provider"
    suppression.suppress(
        session,
        sent.company_id,
        who,
        SuppressionReason.COMPLAINT,
        f"{complaint.feedback_type} report from {reporter}",
    )


def _note_unsubscribe(
    session: Session, box: SecretBox, company_id: uuid.UUID, parsed: ParsedMail
) -> None:
    """A mail from the List-Unsubscribe mailto link (the token in its subject): the candidate
    is opted out of bulk mail, and the mail is automated (never answered)."""
    match = unsubscribe.SUBJECT_RE.match(parsed.subject)
    if match is None:
        return
    candidate = unsubscribe.candidate_for(session, box, match.group(1), company_id)
    if candidate is None:
        return
    unsubscribe.opt_out(session, candidate, "mailto")
    parsed.kind = MessageKind.AUTO_REPLY
    parsed.kind_detail = "unsubscribe request (the List-Unsubscribe mailto link)"


def _inbound_message(
    company_id: uuid.UUID,
    raw: InboundRaw,
    parsed: ParsedMail,
    candidate_id: uuid.UUID | None,
    reason: str,
    detail: str,
) -> Message:
    if parsed.kind != MessageKind.MAIL:
        detail = f"{detail}; {parsed.kind_detail}"
    if parsed.defects:
        detail = f"{detail}; parsed with defects: {'; '.join(parsed.defects[:3])}"
    return Message(
        company_id=company_id,
        candidate_id=candidate_id,
        direction=Direction.INBOUND,
        status=MessageStatus.RECEIVED,
        kind=parsed.kind,
        from_address=parsed.from_address[:320],
        from_name=parsed.from_name[:200],
        forwarded_from=parsed.forwarded_from[:320] or None,
        forwarded_from_name=parsed.forwarded_from_name[:200] or None,
        to_addresses=parsed.to_addresses[:50] or [raw.recipient],
        subject=parsed.subject,
        text=parsed.text,
        html=parsed.html,
        reply_text=parsed.reply_text,
        quoted_text=parsed.quoted_text,
        signature=parsed.signature,
        segments=[segment.as_dict() for segment in parsed.segments],
        reply_html=parsed.reply_html,
        html_note=parsed.html_note,
        message_id_header=parsed.message_id,
        in_reply_to=parsed.in_reply_to or None,
        references=parsed.references or None,
        match_reason=reason,
        match_detail=detail,
        inbound_raw_id=raw.id,
        created_at=raw.received_at,
        updated_at=utcnow(),
    )


def _consume_check(session: Session, raw: InboundRaw, token: str, settings: Settings) -> Routed:
    """A redirect leg's check message came back. The platform sent it to the custom address's
    mail exchanger, so arriving at this company's hosted address proves that the address's own
    mail routing redirects here: the company owns the address, unless another company proved
    it first. It is consumed either way: never shown in Unassigned or on a candidate's tab."""
    raw.state = InboundState.CHECK
    connection = session.exec(
        select(Connection).where(col(Connection.check_token_hash) == token_hash(token))
    ).first()
    if connection is None or connection.company_id != raw.company_id:
        return Routed(state=RoutingState.CHECK)
    if connection.status in ownership.LET_GO:
        return Routed(state=RoutingState.CHECK)  # let go meanwhile: proves nothing
    company = session.get(Company, connection.company_id)
    hosted = settings.hosted_address(company.slug) if company else raw.recipient
    if ownership.claim(session, connection, raw.received_at):
        status, step = RedirectStatus.VERIFIED, StepStatus.OK
        detail = verified_detail(connection.custom_address, hosted, raw.received_at)
    else:
        status, step = RedirectStatus.NOT_SEEN, StepStatus.FAILED
        detail = held_detail(connection.custom_address)
    waiting = connection.check_workflow_id
    _record_check(session, connection, status, step, detail, raw.received_at)
    if status == RedirectStatus.VERIFIED:
        inbound_paths.redirect_working(session, connection)
    return Routed(
        state=RoutingState.CHECK, connection_id=str(connection.id), check_workflow_id=waiting
    )


def _record_check(
    session: Session,
    connection: Connection,
    status: str,
    step: str,
    detail: str,
    at: datetime,
) -> None:
    """The redirect leg's outcome, its step, and its event; the token is spent."""
    connection.check_token_hash = None
    connection.redirect_status = status
    connection.redirect_checked_at = at
    connection.redirect_detail = detail
    connection.steps = [s for s in connection.steps if s["name"] != "redirect"] + [
        {"name": "redirect", "status": step, "detail": detail}
    ]
    connection.updated_at = utcnow()
    session.add(connection)
    events.redirect_checked(session, connection)


def _consume_check_bounce(
    session: Session, raw: InboundRaw, parsed: ParsedMail, key: str, settings: Settings
) -> Routed:
    """A delivery report about a check message came back to its return path: the redirect
    refused it (Microsoft's 5.7.520, a forwarding that is not allowed, a loop). The redirect leg
    is `blocked`, with the reason in words and the admin's fix."""
    raw.state = InboundState.CHECK
    connection = session.exec(
        select(Connection).where(
            Connection.company_id == raw.company_id,
            col(Connection.check_token_hash) >= key,
            col(Connection.check_token_hash) < key + "g",  # the hashes starting with the key
        )
    ).first()
    if connection is None:
        return Routed(state=RoutingState.CHECK)  # its check is over already
    report = parsed.bounce
    status = (report.status or "") if report else ""
    diagnostic = (report.diagnostic or "") if report else ""
    if not (status or diagnostic):
        diagnostic = " ".join(f"{parsed.subject} {parsed.text[:500]}".split())
    company = session.get(Company, connection.company_id)
    hosted = settings.hosted_address(company.slug) if company else raw.recipient
    detail = bounce_explanation(connection.custom_address, hosted, status, diagnostic)
    waiting = connection.check_workflow_id
    _record_check(
        session, connection, RedirectStatus.BLOCKED, StepStatus.FAILED, detail, raw.received_at
    )
    return Routed(
        state=RoutingState.CHECK,
        connection_id=str(connection.id),
        check_workflow_id=waiting,
        tell_admins=inbound_paths.redirect_failing(session, connection),
    )


def _consume_forwarding_code(session: Session, raw: InboundRaw, parsed: ParsedMail) -> Routed:
    """Gmail's forwarding confirmation for a company's custom address: its code goes on the
    connection and in an event (never confirmed for the admin, never left in Unassigned)."""
    raw.state = InboundState.CHECK
    connection = session.exec(
        select(Connection)
        .where(
            Connection.company_id == raw.company_id,
            func.lower(Connection.custom_address) == parsed.forwarding_requester.lower(),
        )
        .order_by(col(Connection.created_at).desc())
    ).first()
    if connection is not None:
        connection.forwarding_code = parsed.forwarding_code
        connection.forwarding_code_at = raw.received_at
        connection.updated_at = utcnow()
        session.add(connection)
    events.emit(
        session,
        raw.company_id or uuid.UUID(int=0),
        EventType.CONNECTION_FORWARDING_CONFIRMATION,
        {
            "connection_id": str(connection.id) if connection else None,
            "code": parsed.forwarding_code,
        },
    )
    return Routed(
        state=RoutingState.CHECK, connection_id=str(connection.id) if connection else None
    )


def _already_routed(session: Session, raw: InboundRaw) -> Routed:
    message = session.get(Message, raw.message_id) if raw.message_id else None
    return Routed(
        state=str(raw.state),
        message_id=_str(raw.message_id),
        candidate_id=_str(message.candidate_id) if message else None,
        match_reason=message.match_reason if message else None,
        kind=message.kind if message else MessageKind.MAIL,
    )


def _str(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None
