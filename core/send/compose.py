"""A single message's MIME, composed once and stored on its row, so that every attempt sends
the same bytes: the sender chosen now (core/send/senders.py), the conversation's reply-to
token address, its files, an interview invitation's calendar, and for a bulk message composed
again its one-click unsubscribe headers. Refused before any attempt: a recipient on the
suppression list (except an opt-out from bulk mail: a single message about an application is
transactional)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select as core_select
from sqlmodel import Session, col

from core import attachments as files_at_rest
from core.db import RowMissing, get_or_fail
from core.deliverability import suppression, unsubscribe
from core.inbound import tokens
from core.mail import (
    Base64Lines,
    Composed,
    around_files,
    bulk_boundary,
    compose,
    files_boundary,
    part_head,
)
from core.models import Attachment, BulkJob, Candidate, Company, Message
from core.security import SecretBox
from core.send import lifecycle
from core.send.senders import Chosen, choose
from core.settings import Settings
from core.statuses import MessageStatus, SuppressionReason
from core.templates import invitations


class SenderReplaced(Exception):
    """The connection a message was composed for no longer sends for its scope."""


class Suppressed(Exception):
    """The recipient is on the company's suppression list; the words say why and the way out."""


def rows_of(session: Session, message: Message) -> tuple[Company, Candidate | None]:
    """The message's company and candidate, read once. While the caller holds them, the steps
    that look them up by id (the sender choice, the erasure check, the composition) get them from
    the session's identity map without a query: it keeps rows nobody references only weakly, so
    each step would read them again (three reads of the candidate and two of the company per
    send, before)."""
    company = get_or_fail(session, Company, message.company_id)
    candidate = session.get(Candidate, message.candidate_id) if message.candidate_id else None
    return company, candidate


def not_going_out(session: Session, message: Message) -> bool:
    """Cancelled, or its candidate's erasure has begun: never composed (the erasure may have
    removed its text already)."""
    if message.status == MessageStatus.CANCELLED:
        return True
    candidate = session.get(Candidate, message.candidate_id) if message.candidate_id else None
    return candidate is not None and candidate.erasure_requested_at is not None


def without_name(sender: Chosen) -> Chosen:
    """The sender as a workflow's history may hold it: without the display name, which may be
    an employee's (the MIME and the row carry it)."""
    return Chosen(sender.address, "", sender.transport, sender.source, sender.connection_id)


def reply_to(
    session: Session, box: SecretBox, settings: Settings, message: Message, sender: Chosen
) -> str | None:
    """The conversation's reply-to token address, when this sender carries one."""
    if message.candidate_id is None:
        return None
    company = get_or_fail(session, Company, message.company_id)
    return tokens.reply_to_for(
        session,
        key=box.signing_keys()[0],
        hosted=settings.hosted_address(company.slug),
        company_id=message.company_id,
        candidate_id=message.candidate_id,
        connection_id=uuid.UUID(sender.connection_id) if sender.connection_id else None,
    )


def compose_into(
    session: Session, box: SecretBox, settings: Settings, message: Message, sender: Chosen
) -> Composed:
    """Compose the message's MIME from `sender` and store it with the sender on the row.
    Raises Suppressed for a listed recipient, ValueError or UnicodeError for text that cannot
    go into an email."""
    candidate = session.get(Candidate, message.candidate_id) if message.candidate_id else None
    if candidate is None:
        raise RowMissing(f"The candidate of message {message.id} was deleted.")
    listed = suppression.find(session, message.company_id, candidate.email)
    if listed is not None and listed.reason != SuppressionReason.UNSUBSCRIBED:
        raise Suppressed(suppression.explain(listed))
    calendar = None
    if message.invitation:  # an interview invitation: the organizer is the sender
        calendar = invitations.calendar_for(
            message.invitation,
            summary=message.subject,
            organizer=invitations.Party(sender.address, sender.name),
            attendee=invitations.Party(candidate.email, candidate.name),
        )
    # A bulk send's files are the job's, added as each message is sent (core/mail.splice).
    job = session.get(BulkJob, message.bulk_job_id) if message.bulk_job_id else None
    shared_files = job is not None and bool(job.files)
    # A single send's own files (uploads or a template's, copied when it was queued) stay in
    # storage: they are added as it is sent (files_of), a chunk at a time.
    own_files = message.has_attachments and not shared_files
    boundary = None
    if shared_files and job is not None:
        boundary = bulk_boundary(job.id)
    elif own_files:
        boundary = files_boundary(message.id)
    extra = None
    if job is not None and job.unsubscribe:  # composed again: as bulk planning did, with
        company = get_or_fail(session, Company, message.company_id)  # one-click unsubscribe
        extra = {
            name: " ".join(folded.split())  # the email package folds it again
            for name, folded in unsubscribe.headers_for(
                box,
                settings.public_url,
                settings.hosted_address(company.slug),
                company.id,
                candidate.id,
            )
        }
    _, composed = compose(
        files_later=shared_files or own_files,
        boundary=boundary,
        extra_headers=extra,
        calendar=calendar,
        reply_to=reply_to(session, box, settings, message, sender),
        from_address=sender.address,
        from_name=sender.name,
        to_address=candidate.email,
        to_name=candidate.name,
        subject=message.subject,
        text=message.text,
        html=message.html,
        message_id=message.message_id_header,
        date=message.created_at,
        in_reply_to=message.in_reply_to,
        references=message.references,
    )
    message.raw_mime = composed.mime
    message.mime_without_files = own_files
    message.from_address = sender.address
    message.from_name = sender.name
    message.to_addresses = composed.envelope_to
    message.transport = sender.transport
    message.connection_id = uuid.UUID(sender.connection_id) if sender.connection_id else None
    lifecycle.composed(message)
    session.add(message)
    return composed


@dataclass(frozen=True)
class StoredFile:
    """A file of a message composed without its files, as its sending reads it: the row's
    id, name, type and size, and where its bytes are (core/attachments.stream)."""

    id: uuid.UUID
    filename: str
    content_type: str
    size: int
    chunks: int
    content: bytes  # a file of one chunk: sealed here; a chunked one: empty
    sealed: bool


def files_of(session: Session, message: Message) -> list[StoredFile]:
    """The files a message composed without them carries, in the order they go in (by name,
    then id): the same every attempt."""
    if not message.mime_without_files:
        return []
    rows = session.execute(
        core_select(
            col(Attachment.id),
            col(Attachment.filename),
            col(Attachment.content_type),
            col(Attachment.size),
            col(Attachment.chunks),
            col(Attachment.content),
            col(Attachment.sealed),
        )
        .where(col(Attachment.message_id) == message.id)
        .order_by(col(Attachment.filename), col(Attachment.id))
    ).all()
    return [StoredFile(*row) for row in rows]


def mime_pieces(
    session: Session, box: SecretBox, message: Message, mime: bytes
) -> Iterator[bytes | memoryview]:
    """The message as it was sent, in pieces: `mime` (its raw_mime) with its files added from
    storage a chunk at a time when it was composed without them (an export's .eml)."""
    stored = files_of(session, message)
    if not stored:
        yield mime
        return
    boundary = files_boundary(message.id)
    before, after = around_files(mime, boundary)
    yield before
    for file in stored:
        yield part_head(boundary, file.filename, file.content_type)
        lines = Base64Lines()
        for chunk in files_at_rest.pieces(
            session, box, file.id, file.content, file.sealed, file.chunks
        ):
            yield lines.feed(chunk)
        yield lines.end()
    yield after


def recompose(session: Session, box: SecretBox, settings: Settings, message: Message) -> Composed:
    """The connection this message was composed for was replaced, or its scope switched back
    to the platform, before it went out: compose it again, same Message-ID, for the sender in
    effect now (core/send/senders.py). Its row then shows the sender it really used."""
    return compose_into(session, box, settings, message, choose(session, settings, message))
