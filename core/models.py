"""SQLModel tables. Every row that belongs to a tenant carries `company_id`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

# The status vocabulary lives in core/statuses.py (workflows share it); re-exported here.
from core.run_ids import bulk_workflow_id, send_workflow_id, setup_workflow_id
from core.statuses import (  # noqa: F401 - tests and older code import them from here
    KIND_LABELS,
    LIVE_STATUSES,
    OAUTH_KINDS,
    SETUP_STATUSES,
    BulkJobStatus,
    ConnectionKind,
    ConnectionStatus,
    InboundState,
    MatchReason,
    MessageKind,
    MessageStatus,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both databases (SQLite drops the offset on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def table_of(model: type[SQLModel]) -> Table:
    """A model's Core table, for the hot paths that use SQLAlchemy Core (SQLModel sets
    `__table__` at class creation, where type checkers do not see it)."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


def ts(nullable: bool = False, **kw: Any) -> Column[datetime]:
    return Column(UTCDateTime(), nullable=nullable, **kw)


class SenderNameMode(StrEnum):
    COMPANY = "company"
    EMPLOYEE = "employee"


class Permission(StrEnum):
    RECRUITING_SETTINGS = "recruiting_settings"
    MESSAGING = "messaging"
    OPERATOR = "operator"


class ApplicationStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Direction(StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class Company(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=200)
    slug: str = Field(max_length=63, sa_column_kwargs={"unique": True}, index=True)
    sender_name_mode: str = Field(default=SenderNameMode.COMPANY, max_length=16)
    # A template's variant when the candidate's language has none (BCP 47; None: the first).
    default_language: str | None = Field(default=None, max_length=35)
    # Every single send waits this long before its first attempt, so it can be taken back
    # (None: RECRUITMAIL_UNDO_SECONDS).
    undo_seconds: int | None = None
    # The company's default signature (a legal entity's own comes first for its candidates).
    signature_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    signature_html: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class LegalEntity(SQLModel, table=True):
    __tablename__ = "legal_entity"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    name: str = Field(max_length=200)
    # The entity's signature, under mail sent in its (or the company's) name.
    signature_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    signature_html: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class User(SQLModel, table=True):
    __tablename__ = "app_user"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    email: str = Field(max_length=320)
    name: str = Field(max_length=200)
    permissions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # sha256 of the bearer token; tokens are 256-bit random, so a fast hash is enough.
    token_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True}, index=True)
    # An email when a candidate's reply reaches a thread this user wrote in (or, for admins,
    # one nobody wrote in, or Unassigned). Each user can turn it off.
    notify_replies: bool = True
    # {{ sender.title }}, and the user's own signature (under mail sent in their name).
    title: str | None = Field(default=None, max_length=200)
    signature_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    signature_html: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class Candidate(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    legal_entity_id: uuid.UUID | None = Field(default=None, foreign_key="legal_entity.id")
    name: str = Field(max_length=200)
    email: str = Field(max_length=320, index=True)
    application_status: str = Field(default=ApplicationStatus.OPEN, max_length=16)
    closed_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    # Set when mail to this address bounced; the detail is the receiving server's diagnostic.
    email_bounced_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    email_bounce_detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Erasure (GDPR Art. 17): requested (no more mail goes out), then done (anonymised).
    erasure_requested_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    erased_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    # The candidate agreed to be kept longer: the retention rule waits until then.
    retain_until: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    # The retention rule asked the candidate whether they may be kept (an answer clears it).
    consent_asked_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    # Which template variant they get (BCP 47), and the time zone of their interview times.
    language: str | None = Field(default=None, max_length=35)
    timezone: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class CandidateAddress(SQLModel, table=True):
    """Another address a candidate writes from, remembered when a recruiter assigns a message."""

    __tablename__ = "candidate_address"
    __table_args__ = (UniqueConstraint("company_id", "email", name="uq_candidate_address_email"),)
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    candidate_id: uuid.UUID = Field(foreign_key="candidate.id", index=True)
    email: str = Field(max_length=320)  # lower-cased, for matching
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class Connection(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    legal_entity_id: uuid.UUID | None = Field(default=None, foreign_key="legal_entity.id")
    kind: str = Field(max_length=16)  # google, microsoft, smtp
    custom_address: str = Field(max_length=320)
    status: str = Field(max_length=32)
    # Where the setup workflow stands. Equal to `status` during a first setup; while a live
    # connection is reconnected, `status` stays needs_reauth (no silent fallback) and this moves.
    setup_state: str | None = Field(default=None, max_length=32)
    display_mailbox: str | None = Field(default=None, max_length=320)
    smtp_host: str | None = Field(default=None, max_length=255)
    smtp_port: int | None = None
    smtp_security: str | None = Field(default=None, max_length=16)
    smtp_verify_certificate: bool = True
    smtp_username: str | None = Field(default=None, max_length=320)
    # Encrypted (SecretBox, connection id as associated data): the SMTP password, or the OAuth
    # token cache. Never returned by the API, never in workflow history.
    secret_blob: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    # OAuth setup: the pending flow (PKCE verifier) and the callback's query (the code), both
    # encrypted; the nonce of the one state parameter that may still be used.
    oauth_flow_blob: bytes | None = Field(
        default=None, sa_column=Column(LargeBinary, nullable=True)
    )
    oauth_callback_blob: bytes | None = Field(
        default=None, sa_column=Column(LargeBinary, nullable=True)
    )
    oauth_state_nonce: str | None = Field(default=None, max_length=64)
    authorization_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    admin_consent_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    admin_instructions: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # What the last test checked, in order: [{"name", "status": ok|failed|skipped, "detail"}].
    steps: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    workflow_id: str | None = Field(default=None, max_length=200)
    created_by_user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    tested_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    activated_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    # The round trip's redirect leg (core.statuses.RedirectStatus). `verified` is the proof
    # that this company controls the address: only then is its mail stored for the company.
    redirect_status: str = Field(default="not_checked", max_length=16)
    redirect_checked_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    redirect_detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The DKIM signatures of the send leg's test message as it came back through the redirect
    # ({"checked_at", "signatures": [{"domain", "selector", "ok", "detail"}]}), for the
    # deliverability check (core/deliverability/checks.py); None until one came back.
    dkim_check: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The mailbox's own 24-hour quota, over the provider's defaults (core/throttle.py): a
    # consumer Gmail account's lower limits, a tenant's own Exchange limits. None: the default.
    quota_messages_per_day: int | None = None
    quota_recipients_per_day: int | None = None
    # The last deliverability report ({"domain", "status", "checks", "checked_at"}), made at the
    # end of the round trip and by the daily `deliverability-check` run.
    deliverability: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    # sha256 of the last test message's single-use token; the message comes back carrying it.
    check_token_hash: str | None = Field(default=None, max_length=64, index=True)
    # The run waiting for that check message (a setup's, or a re-check's), when it went out,
    # and the mail exchanger it went to (what a check that never came back is explained by).
    check_workflow_id: str | None = Field(default=None, max_length=200)
    check_sent_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    check_exchanger: str | None = Field(default=None, max_length=255)
    # When the admins were told the redirect stopped working (once, until it works again).
    redirect_told_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    # How replies reach Recruitmail (core.statuses.InboundPath), and what mailbox sync imports.
    inbound_paths: list[str] = Field(
        default_factory=lambda: ["redirect"], sa_column=Column(JSON, nullable=False)
    )
    import_scope: str = Field(default="replies", max_length=16)
    # The OAuth scopes the stored grant carries (reading mail needs its own).
    granted_scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Files over Graph's 4 MB request (Microsoft): the sign-in asks for Mail.ReadWrite, and such
    # a message goes as a draft with upload sessions (providers/microsoft.py). Gmail and SMTP
    # take large files without it.
    large_files: bool = Field(default=False)
    # How a Microsoft connection sends: "delegated" (the signed-in user's Mail.Send, the
    # default) or "application" (Recruitmail's own application permission Mail.Send, which the
    # tenant's admin scopes to the recruiting mailbox with Exchange's RBAC for Applications).
    send_mode: str = Field(default="delegated", max_length=16)
    # Gmail's forwarding confirmation code for this address, as it arrived at the hosted address.
    forwarding_code: str | None = Field(default=None, max_length=64)
    forwarding_code_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))

    @property
    def run_id(self) -> str:
        """The id of the workflow run that moves this row (set when the row is written)."""
        return self.workflow_id or setup_workflow_id(str(self.id))


class MailboxSync(SQLModel, table=True):
    """Reading a connected mailbox (Graph delta queries, Gmail history): where the reading
    stands, the provider's notification channel, and the path's health. One per connection,
    moved by its `mailbox-sync-{connection id}` run."""

    __tablename__ = "mailbox_sync"
    connection_id: uuid.UUID = Field(foreign_key="connection.id", primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    provider: str = Field(max_length=16)
    # core.statuses.PathState: active, waiting_for_consent, failing, off
    state: str = Field(default="off", max_length=32)
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The Graph delta link or the Gmail history id the next read starts from (saved only after
    # the messages it covers are stored); empty: a first read, from `resync_since`.
    cursor: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    resync_since: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    last_success_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    # How long the newest imported message took from the mailbox to Recruitmail.
    lag_seconds: float | None = None
    imported: int = 0
    failing_since: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    told_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    # Graph: the subscription and the hash of its clientState; Gmail: the watch's expiry.
    subscription_id: str | None = Field(default=None, max_length=255, index=True)
    client_state_hash: str | None = Field(default=None, max_length=64)
    channel_expires_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class ConversationToken(SQLModel, table=True):
    """A candidate's conversation with a company, as its reply-to token names it
    (core/inbound/tokens.py): the id, whose MAC the token carries."""

    __tablename__ = "conversation_token"
    __table_args__ = (
        UniqueConstraint("company_id", "candidate_id", name="uq_conversation_token_candidate"),
    )
    id: str = Field(primary_key=True, max_length=16)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    candidate_id: uuid.UUID = Field(foreign_key="candidate.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class AddressOwner(SQLModel, table=True):
    """Who owns a custom address: the first company whose round trip proved it (its check
    message came back through the address's real mail routing). One row per address, so a
    second company's proof conflicts in the database, not in application code. Released when
    the owner disables or deletes its last proving connection."""

    __tablename__ = "address_owner"
    address: str = Field(primary_key=True, max_length=320)  # lower-cased
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    connection_id: uuid.UUID = Field(foreign_key="connection.id")
    proven_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class Message(SQLModel, table=True):
    # An inbound Message-ID reaching the same company twice (a redirect plus a copy) is stored
    # once; our own outbound Message-IDs are unique by construction.
    __table_args__ = (
        UniqueConstraint("company_id", "message_id_header", name="uq_message_company_msgid"),
        # A candidate's messages, and a company's Unassigned ones (candidate_id IS NULL).
        Index("ix_message_company_candidate", "company_id", "candidate_id"),
    )
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    candidate_id: uuid.UUID | None = Field(default=None, foreign_key="candidate.id", index=True)
    direction: str = Field(max_length=16)
    status: str = Field(max_length=16, index=True)
    from_address: str = Field(default="", max_length=320)
    from_name: str = Field(default="", max_length=200)
    # A colleague's forward: the author of the forwarded message, who routing went by.
    forwarded_from: str | None = Field(default=None, max_length=320)
    forwarded_from_name: str | None = Field(default=None, max_length=200)
    to_addresses: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    subject: str = Field(default="", sa_column=Column(Text, nullable=False))
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    html: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Inbound: what the sender wrote in this message, apart from the history quoted under it,
    # its sign-off, and the HTML without the history (None: the HTML has none to fold).
    reply_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    quoted_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    signature: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Inbound: the text as segments in order, [{"kind": new|quoted|signature|forwarded,
    # "text": …}] (core/inbound/segments.py); None: received before segments were stored.
    segments: list[dict[str, str]] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    reply_html: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Inbound: who really sent it (DMARC, SPF, DKIM: core/inbound/auth.py), and whether DMARC
    # verified its From (None: the domain asks nothing, or it was not checked).
    sender_auth: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    sender_verified: bool | None = None
    # Inbound: the HTML and the folded HTML made safe to show, once, when stored (remote images
    # held back; inline images as `cid:{attachment id}`); or why the HTML is not shown.
    html_safe: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    reply_html_safe: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    html_note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Our Message-ID, generated once when the row is created, so replies thread to it.
    message_id_header: str = Field(sa_column=Column(String(998), nullable=False, index=True))
    in_reply_to: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    references: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    match_reason: str | None = Field(default=None, max_length=16)
    # Why routing chose what it chose, in words (inbound only).
    match_detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    kind: str = Field(default=MessageKind.MAIL, max_length=16)
    # Inbound: how it reached Recruitmail: smtp, raw, mailjet, graph or gmail.
    received_via: str | None = Field(default=None, max_length=16)
    inbound_raw_id: uuid.UUID | None = Field(default=None, foreign_key="inbound_raw.id")
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = 0
    # Set while a delivery attempt is under way: an erasure waits for it to end.
    attempt_started_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    # Its content was erased with its candidate's data (ids, statuses and times stay).
    erased_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    # The exact bytes composed once and sent on every attempt.
    raw_mime: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    transport: str | None = Field(default=None, max_length=32)
    connection_id: uuid.UUID | None = Field(default=None, foreign_key="connection.id")
    sender_user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    workflow_id: str | None = Field(default=None, max_length=200)
    provider_message_id: str | None = Field(default=None, max_length=255)
    # A bulk message whose recipient's server said "later" (4xx): when it is tried again, and
    # since when it has been put off (its retries end SEND_RETRY_TOTAL after that).
    next_attempt_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    deferred_since: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    # A message of a bulk send, and the batch (one activity) that sends it.
    bulk_job_id: uuid.UUID | None = Field(default=None, foreign_key="bulk_job.id", index=True)
    bulk_batch: int | None = None
    # Send later (and the undo window): the first attempt waits until then, `scheduled`.
    send_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    # Written from a template: which, and the variant's language (what was rendered is above).
    template_id: uuid.UUID | None = None  # no foreign key: a deleted template leaves its id
    template_language: str | None = Field(default=None, max_length=35)
    # The template's sender name ("company" or "employee") over the company's setting.
    sender_name_mode: str | None = Field(default=None, max_length=16)
    # An interview invitation (core/templates/invitations.py): its uid, sequence, method and
    # times; the candidate's answer lands here too ({"answer": accepted|declined|tentative}).
    invitation: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Outbound: files go with it (attachment rows, copied from uploads or a template when
    # queued), so composing reads them; the common send without files reads nothing more.
    has_attachments: bool = False
    # Outbound with files: `raw_mime` holds the message without them (a multipart/mixed under
    # core/mail.files_boundary(id)) and its attachment rows are added from storage, streamed,
    # as it is sent (the same bytes every attempt). Messages composed before 0025 hold them.
    mime_without_files: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts(index=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    sent_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))

    @property
    def run_id(self) -> str:
        """The id of the workflow run that moves this row (set when the row is written)."""
        return self.workflow_id or send_workflow_id(str(self.id))


class BulkJob(SQLModel, table=True):
    """One email to many candidates; every recipient also has its own Message row."""

    __tablename__ = "bulk_job"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    created_by_user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    subject: str = Field(sa_column=Column(Text, nullable=False))  # the templates, as written
    text: str = Field(sa_column=Column(Text, nullable=False))
    html: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    status: str = Field(default=BulkJobStatus.QUEUED, max_length=16)
    total: int = 0
    batches: int = 0
    cancel_requested: bool = False
    # One-click unsubscribe headers in each message, opted-out candidates skipped
    # (core/deliverability/unsubscribe.py); off for transactional bulk mail.
    unsubscribe: bool = True
    # Send later: the job's first batch waits until then (status `scheduled`).
    send_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    template_id: uuid.UUID | None = None  # no foreign key: a deleted template leaves its id
    sender_name_mode: str | None = Field(default=None, max_length=16)  # the template's
    # The job carries files (bulk_file rows, until it ends): the names, types and sizes.
    files: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    # When the next send is due, while a throttle holds the job back.
    next_send_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    # Why: "rate" (messages per minute) or "quota" (the mailbox's 24-hour quota is spent).
    next_send_reason: str | None = Field(default=None, max_length=8)
    workflow_id: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    finished_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))

    @property
    def run_id(self) -> str:
        """The id of the workflow run that moves this row (set when the row is written)."""
        return self.workflow_id or bulk_workflow_id(str(self.id))


class MailboxThrottle(SQLModel, table=True):
    """The send rate of one mailbox, shared by every job sending through it.

    `next_slot` (epoch seconds) is advanced atomically by one UPDATE per send, so concurrent
    batches on any number of workers take distinct slots.
    """

    __tablename__ = "mailbox_throttle"
    key: str = Field(primary_key=True, max_length=80)  # platform, or connection:{id}
    next_slot: float = 0.0


class MailboxLease(SQLModel, table=True):
    """One of the few requests a mail API lets run at once against a mailbox (Graph: four per
    mailbox, across every worker process): held while a send talks to it (core/send/lease.py);
    a holder that died frees its slot when `until` passes."""

    __tablename__ = "mailbox_lease"
    key: str = Field(primary_key=True, max_length=80)  # graph:{connection id}
    slot: int = Field(primary_key=True)
    holder: str | None = Field(default=None, max_length=32)
    until: datetime | None = Field(default=None, sa_column=ts(nullable=True))


class ThrottleSend(SQLModel, table=True):
    """One send a mailbox's quota counts (core/throttle.py): its slot and its recipients, kept
    for the provider's rolling 24 hours."""

    __tablename__ = "throttle_send"
    __table_args__ = (Index("ix_throttle_send_key_at", "key", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=80)
    at: float  # the send's slot, epoch seconds
    recipients: int = 1


class Attachment(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    message_id: uuid.UUID = Field(foreign_key="message.id", index=True)
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=255)
    size: int
    sha256: str = Field(max_length=64)
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sealed: bool = False  # encrypted at rest (core/attachments.seal); older rows are not
    # Over 1 MiB: stored as this many FileChunk rows, `content` empty (core/attachments).
    chunks: int = 0
    original_sender: str | None = Field(default=None, max_length=320)  # of an attached message
    # An inline image's Content-ID (no brackets): the message's HTML shows it as cid:{this}.
    content_id: str | None = Field(default=None, max_length=255)


class BulkFile(SQLModel, table=True):
    """A file a bulk send carries: stored once for the job, added to each message as it is
    sent (core/mail.splice), deleted when the job ends."""

    __tablename__ = "bulk_file"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    job_id: uuid.UUID = Field(foreign_key="bulk_job.id", index=True)
    position: int
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=255)
    size: int
    sha256: str = Field(max_length=64)
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sealed: bool = False  # encrypted at rest (core/attachments.seal)


class InboundRaw(SQLModel, table=True):
    """Received bytes, stored before the sender is told 250, one row per receiving company."""

    __tablename__ = "inbound_raw"
    # A unique index, not a constraint: SQLite adds one without copying the table.
    __table_args__ = (
        Index(
            "uq_inbound_raw_provider_id",
            "company_id",
            "channel",
            "provider_message_id",
            unique=True,
        ),
    )
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID | None = Field(default=None, foreign_key="company.id", index=True)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sha256: str = Field(max_length=64, index=True)
    size: int = 0
    recipient: str = Field(max_length=320)
    mail_from: str = Field(default="", max_length=320)
    # A mailbox sync's import: the provider's id of the message (an import read twice is
    # stored once).
    provider_message_id: str | None = Field(default=None, max_length=255)
    # The client that delivered it over SMTP, and the name it gave in HELO (for SPF).
    client_ip: str | None = Field(default=None, max_length=64)
    helo: str | None = Field(default=None, max_length=255)
    # smtp, raw (HTTP), mailjet, graph or gmail (mailbox sync)
    channel: str = Field(default="smtp", max_length=16)
    received_at: datetime = Field(default_factory=utcnow, sa_column=ts(index=True))
    state: str = Field(default=InboundState.STORED, max_length=16, index=True)
    message_id: uuid.UUID | None = None  # the Message it became
    workflow_id: str | None = Field(default=None, max_length=200)


class Suppression(SQLModel, table=True):
    """An address a company does not mail (core/deliverability/suppression.py). Found by
    `address_hash` (SHA-256 of the company's id and the address): an erased candidate's row
    keeps only the hash, so the address stays suppressed without being kept."""

    __table_args__ = (
        UniqueConstraint("company_id", "address_hash", name="uq_suppression_company_address"),
    )
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    address: str | None = Field(default=None, max_length=320)
    address_hash: str = Field(max_length=64)
    reason: str = Field(max_length=16)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_by_user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class SoftBounce(SQLModel, table=True):
    """A delivery given up after retrying: enough of them in 7 days suppress the address."""

    __tablename__ = "soft_bounce"
    __table_args__ = (Index("ix_soft_bounce_company_address", "company_id", "address_hash"),)
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id")
    address_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    action: str = Field(max_length=64)
    target: str = Field(default="", max_length=200, index=True)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class CompanyPrivacy(SQLModel, table=True):
    """A company's privacy rules (GET/PUT /v1/privacy). No row means the defaults."""

    __tablename__ = "company_privacy"
    company_id: uuid.UUID = Field(foreign_key="company.id", primary_key=True)
    # Reply notification emails name the candidate (else "a candidate", with a link).
    notification_names_candidate: bool = False
    # Erase a candidate this many days after their application closed (None: never by rule).
    erase_after_days_closed: int | None = None
    # Delete Unassigned messages older than this.
    unassigned_retention_days: int = 180
    # Ask the candidate this many days before the erasure whether they may be kept.
    consent_extension_days: int | None = None
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class Erasure(SQLModel, table=True):
    """One candidate's erasure, as GET /v1/erasures/{id} shows its progress."""

    __tablename__ = "erasure"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    # One erasure per candidate: a second request (or sweep) finds the first.
    candidate_id: uuid.UUID = Field(
        foreign_key="candidate.id", index=True, sa_column_kwargs={"unique": True}
    )
    status: str = Field(default="running", max_length=16)  # running, done
    reason: str = Field(default="request", max_length=32)  # request, retention, consent
    requested_by_user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    messages_cancelled: int = 0
    messages_erased: int = 0
    attachments_deleted: int = 0
    raw_messages_erased: int = 0
    outbox_copies_deleted: int = 0
    workflow_id: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    finished_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))


class Event(SQLModel, table=True):
    """What happened, written in the same transaction as the change it reports (the
    transactional outbox). `seq` is given after commit, in commit order, by one sequencer at a
    time (core/events.py): the feed and the webhooks read only sequenced events, so a consumer
    that keeps its cursor never misses or repeats one."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_company_seq", "company_id", "seq"),)
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, unique=True, index=True))
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    type: str = Field(max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts(index=True))
    # Ids, statuses and reasons: what every endpoint and the feed get.
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The sender address, the candidate's name and the subject, for endpoints that opted in;
    # erased with the candidate.
    personal: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    candidate_id: uuid.UUID | None = Field(default=None, index=True)
    # An event for one endpoint only (webhook.test).
    endpoint_id: uuid.UUID | None = None


class EventSequence(SQLModel, table=True):
    """The last sequence number given to an event: one row, locked while events are
    sequenced, so sequencers take turns."""

    __tablename__ = "event_sequence"
    id: int = Field(default=1, primary_key=True)
    last: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class EventConsumer(SQLModel, table=True):
    """How far an in-house consumer of the events (reply notifications) has read."""

    __tablename__ = "event_consumer"
    name: str = Field(primary_key=True, max_length=64)
    last_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoint"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    url: str = Field(sa_column=Column(Text, nullable=False))
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    description: str = Field(default="", max_length=500)
    include_personal_data: bool = False
    disabled: bool = False
    disabled_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    disabled_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    # Encrypted (SecretBox, endpoint id as associated data): {"current", "retired": [{"secret",
    # "until"}]} (core/webhooks.py). Shown once, when created or rotated.
    secret_blob: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # The last event (seq) queued for delivery to this endpoint.
    cursor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # When its current run of failed attempts began (None while deliveries succeed).
    failing_since: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    workflow_id: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class WebhookDelivery(SQLModel, table=True):
    """One event to one endpoint, until it is delivered or its retries run out."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_delivery_event"),
    )
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    endpoint_id: uuid.UUID = Field(foreign_key="webhook_endpoint.id", index=True)
    event_id: uuid.UUID = Field(foreign_key="event.id", index=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))  # delivery order
    status: str = Field(default="pending", max_length=16, index=True)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=ts(nullable=True, index=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    delivered_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))


class WebhookAttempt(SQLModel, table=True):
    """One HTTP request of a delivery, as GET /v1/webhook-endpoints/{id}/deliveries shows it."""

    __tablename__ = "webhook_attempt"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    delivery_id: uuid.UUID = Field(foreign_key="webhook_delivery.id", index=True)
    endpoint_id: uuid.UUID = Field(foreign_key="webhook_endpoint.id", index=True)
    event_id: uuid.UUID = Field(index=True)
    attempted_at: datetime = Field(default_factory=utcnow, sa_column=ts(index=True))
    outcome: str = Field(max_length=16)  # delivered, failed, gone
    status_code: int | None = None
    latency_ms: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    response_body: str = Field(default="", sa_column=Column(Text, nullable=False))


class MessageTemplate(SQLModel, table=True):
    """A stored template (core/templates/grammar.py): language variants of subject, text and
    HTML with merge fields; company-wide, or one legal entity's."""

    __tablename__ = "message_template"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    legal_entity_id: uuid.UUID | None = Field(default=None, foreign_key="legal_entity.id")
    name: str = Field(max_length=200)
    type: str = Field(max_length=16)
    # [{"language", "subject", "text", "html"}], the first the fallback.
    variants: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    # The sender's name on mail from it: "company" or "employee" (None: the company's setting).
    sender: str | None = Field(default=None, max_length=16)
    # Default attachments, inline: [{"filename", "content_type", "size", "sha256",
    # "content_b64"}], copied onto each message sent from it (api/services/attachments.py).
    attachments: list[dict[str, Any]] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    created_by_user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class Invitation(SQLModel, table=True):
    """An interview invitation's calendar identity: one UID per interview and company, its
    SEQUENCE raised by every update, and the candidate's last answer."""

    __table_args__ = (UniqueConstraint("company_id", "uid", name="uq_invitation_company_uid"),)
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    candidate_id: uuid.UUID | None = Field(default=None, index=True)
    uid: str = Field(max_length=255)
    sequence: int = 0
    # The last message that carried it (the answer is recorded on it).
    message_id: uuid.UUID | None = None
    method: str = Field(default="REQUEST", max_length=16)
    answer: str | None = Field(default=None, max_length=16)
    answered_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class FileChunk(SQLModel, table=True):
    """One MiB of a large file (an upload's, a message attachment's), sealed with its file's id
    and its place bound in: read, copied and sent one chunk at a time (core/attachments)."""

    __tablename__ = "file_chunk"
    file_id: uuid.UUID = Field(primary_key=True)  # the Upload's or the Attachment's id
    seq: int = Field(primary_key=True)
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Upload(SQLModel, table=True):
    """A file uploaded for sending (POST /v1/attachments). A send copies its bytes into the
    message's attachments; the upload itself is deleted a day after it was made (the worker's
    sweep), used or not."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=255)
    size: int
    sha256: str = Field(max_length=64)
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sealed: bool = False  # encrypted at rest (core/attachments.seal)
    chunks: int = 0  # over 1 MiB: FileChunk rows, `content` empty (core/attachments)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts(index=True))
