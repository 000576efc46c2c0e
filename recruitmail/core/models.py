"""SQLModel tables. Every row that belongs to a tenant carries `company_id`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC on both databases (SQLite drops the offset on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def ts(nullable: bool = False, **kw) -> Column:
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


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    BOUNCED = "bounced"
    RECEIVED = "received"


class MatchReason(StrEnum):
    THREAD = "thread"
    SENDER = "sender"
    MANUAL = "manual"
    NONE = "none"


class ConnectionKind(StrEnum):
    SMTP = "smtp"
    GOOGLE = "google"
    MICROSOFT = "microsoft"


class ConnectionStatus(StrEnum):
    PENDING = "pending"  # created; waiting for a test
    TESTING = "testing"
    TESTED = "tested"  # the last test passed; can be activated
    TEST_FAILED = "test_failed"  # the last test failed; `last_error` says why
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"  # still the scope's sender, but its credentials were refused
    DISABLED = "disabled"  # was active; replaced, or switched back to the platform
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # the setup was not finished in time


# The connection that sends for its scope. needs_reauth stays here: no silent fallback.
LIVE_STATUSES = (ConnectionStatus.ACTIVE, ConnectionStatus.NEEDS_REAUTH)
# A setup still under way; its workflow is running.
SETUP_STATUSES = (
    ConnectionStatus.PENDING,
    ConnectionStatus.TESTING,
    ConnectionStatus.TESTED,
    ConnectionStatus.TEST_FAILED,
)


class Company(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=200)
    slug: str = Field(max_length=63, sa_column_kwargs={"unique": True}, index=True)
    sender_name_mode: str = Field(default=SenderNameMode.COMPANY, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class LegalEntity(SQLModel, table=True):
    __tablename__ = "legal_entity"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    name: str = Field(max_length=200)
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
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class Candidate(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    legal_entity_id: uuid.UUID | None = Field(default=None, foreign_key="legal_entity.id")
    name: str = Field(max_length=200)
    email: str = Field(max_length=320, index=True)
    application_status: str = Field(default=ApplicationStatus.OPEN, max_length=16)
    closed_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts())


class Connection(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    legal_entity_id: uuid.UUID | None = Field(default=None, foreign_key="legal_entity.id")
    kind: str = Field(max_length=16)  # google, microsoft, smtp
    custom_address: str = Field(max_length=320)
    status: str = Field(max_length=32)
    display_mailbox: str | None = Field(default=None, max_length=320)
    smtp_host: str | None = Field(default=None, max_length=255)
    smtp_port: int | None = None
    smtp_security: str | None = Field(default=None, max_length=16)
    smtp_verify_certificate: bool = True
    smtp_username: str | None = Field(default=None, max_length=320)
    secret_blob: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # What the last test checked, in order: [{"name", "status": ok|failed|skipped, "detail"}].
    steps: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    workflow_id: str | None = Field(default=None, max_length=200)
    created_by_user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    tested_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))
    activated_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))


class Message(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    candidate_id: uuid.UUID | None = Field(default=None, foreign_key="candidate.id", index=True)
    direction: str = Field(max_length=16)
    status: str = Field(max_length=16, index=True)
    from_address: str = Field(default="", max_length=320)
    from_name: str = Field(default="", max_length=200)
    to_addresses: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    subject: str = Field(default="", sa_column=Column(Text, nullable=False))
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    html: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Our Message-ID, generated once when the row is created, so replies thread to it.
    message_id_header: str = Field(sa_column=Column(String(998), nullable=False, index=True))
    in_reply_to: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    references: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    match_reason: str | None = Field(default=None, max_length=16)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = 0
    # The exact bytes composed once and sent on every attempt.
    raw_mime: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    transport: str | None = Field(default=None, max_length=32)
    connection_id: uuid.UUID | None = Field(default=None, foreign_key="connection.id")
    sender_user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    workflow_id: str | None = Field(default=None, max_length=200)
    provider_message_id: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts(index=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    sent_at: datetime | None = Field(default=None, sa_column=ts(nullable=True))


class Attachment(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    message_id: uuid.UUID = Field(foreign_key="message.id", index=True)
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=255)
    size: int
    sha256: str = Field(max_length=64)
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class InboundRaw(SQLModel, table=True):
    __tablename__ = "inbound_raw"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sha256: str = Field(max_length=64, index=True)
    recipient: str = Field(max_length=320)
    mail_from: str = Field(default="", max_length=320)
    received_at: datetime = Field(default_factory=utcnow, sa_column=ts())
    state: str = Field(default="stored", max_length=16)


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    company_id: uuid.UUID = Field(foreign_key="company.id", index=True)
    user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    action: str = Field(max_length=64)
    target: str = Field(default="", max_length=200)
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts())
