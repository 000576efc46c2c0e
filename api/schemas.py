"""Request and response bodies. Requests refuse unknown fields; responses never hold secrets."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from core.mail import check_body_text, check_header_text, normalize_address


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


EmailAddress = Annotated[str, AfterValidator(normalize_address)]
HeaderText = Annotated[
    str,
    StringConstraints(max_length=200),
    AfterValidator(check_header_text),
    AfterValidator(_not_blank),
]
Subject = Annotated[
    str,
    StringConstraints(max_length=998),
    AfterValidator(check_header_text),
    AfterValidator(_not_blank),
]
Body = Annotated[
    str,
    StringConstraints(max_length=1_000_000),
    AfterValidator(check_body_text),
    AfterValidator(_not_blank),
]
Html = Annotated[str, StringConstraints(max_length=2_000_000), AfterValidator(check_body_text)]
# A label people read in lists: no NUL, control characters (C0, C1) or line breaks.
Description = Annotated[str, StringConstraints(max_length=500), AfterValidator(check_header_text)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- mail settings ---------------------------------------------------------------------


def _undo_window(value: int) -> int:
    if value != 0 and not 5 <= value <= 30:
        raise ValueError("0 (off), or 5 to 30")
    return value


class MailSettingsUpdate(Request):
    sender_name_mode: Literal["company", "employee"] | None = None
    default_language: Language | None = Field(
        default=None, description="A template's variant when the candidate's language has none."
    )
    undo_seconds: Annotated[int, AfterValidator(_undo_window)] | None = Field(
        default=None,
        description="Hold every single send this long (0, or 5 to 30) so it can be cancelled.",
    )
    signature_text: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    signature_html: Annotated[str, StringConstraints(max_length=50_000)] | None = None


class EffectiveSenderPublic(BaseModel):
    address: str
    transport: str
    source: Literal["entity", "company", "platform"]


class RedirectCheckPublic(BaseModel):
    """The round-trip test's redirect leg: did the test message come back to the hosted
    address? `verified` is also what makes the address this company's for inbound mail."""

    status: str  # verified, waiting, not_seen, blocked (a delivery report said why) or not_checked
    checked_at: datetime | None = None
    detail: str | None = None
    # A check message is on its way (a test or a re-check) since then; the status says how
    # the last check ended meanwhile.
    checking_since: datetime | None = None


class ScopePublic(BaseModel):
    legal_entity_id: uuid.UUID | None
    name: str
    custom_address: str | None
    connections: list[ConnectionSummary] = []
    effective_sender: EffectiveSenderPublic
    # The redirect check of the scope's connection (the live one, else the newest setup).
    redirect_check: RedirectCheckPublic | None = None
    warnings: list[str] = []


class MailSettingsPublic(BaseModel):
    hosted_address: str
    sender_name_mode: str
    default_language: str | None = None
    undo_seconds: int = 0  # in effect (the company's, else the platform's)
    signature_text: str | None = None
    signature_html: str | None = None
    scopes: list[ScopePublic]


# -- legal entities and candidates -----------------------------------------------------


class LegalEntityCreate(Request):
    name: HeaderText


class LegalEntityPublic(Public):
    id: uuid.UUID
    name: str
    signature_text: str | None = None
    signature_html: str | None = None
    created_at: datetime


class CandidateCreate(Request):
    name: HeaderText
    email: EmailAddress
    legal_entity_id: uuid.UUID | None = None
    application_status: Literal["open", "closed"] = "open"
    language: Language | None = Field(default=None, description="BCP 47, e.g. de or en-GB.")
    timezone: TimeZoneName | None = None


class CandidateUpdate(Request):
    name: HeaderText | None = None
    email: EmailAddress | None = None
    legal_entity_id: uuid.UUID | None = None
    application_status: Literal["open", "closed"] | None = None
    language: Language | None = None
    timezone: TimeZoneName | None = None


class CandidatePublic(Public):
    id: uuid.UUID
    name: str
    email: str
    legal_entity_id: uuid.UUID | None
    application_status: str
    closed_at: datetime | None
    language: str | None = None
    timezone: str | None = None
    # Set when mail to `email` bounced, with the receiving server's reason.
    email_bounced_at: datetime | None = None
    email_bounce_detail: str | None = None
    # Set when an erasure of the candidate's data began, and when it was done.
    erasure_requested_at: datetime | None = None
    erased_at: datetime | None = None
    # The candidate agreed to be kept until then (the retention question).
    retain_until: datetime | None = None
    created_at: datetime


# -- messages ----------------------------------------------------------------------------


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError("give a time zone (for example 2026-12-08T09:00:00+01:00 or …Z)")
    return value


AwareTime = Annotated[datetime, AfterValidator(_aware)]
Language = Annotated[
    str,
    StringConstraints(min_length=2, max_length=35, pattern=r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$"),
]


def _zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not a time zone; use an IANA name such as Europe/Berlin"
        ) from None
    return value


TimeZoneName = Annotated[str, StringConstraints(max_length=64), AfterValidator(_zone)]
TemplateData = dict[str, Any]


class TemplateAttachment(Request):
    """A file inline: a template's default attachment, or a small one on a single send."""

    filename: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    content_type: Annotated[
        str,
        StringConstraints(max_length=127, pattern=r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$"),
    ] = "application/octet-stream"
    content_base64: Annotated[str, StringConstraints(max_length=4_500_000)]


class UploadPublic(BaseModel):
    id: uuid.UUID
    filename: str
    size: int
    content_type: str


class InvitationRequest(Request):
    """An interview invitation: a calendar event the candidate's calendar offers to add."""

    uid: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = Field(
        default=None,
        description="The interview's calendar UID. A later send with the same uid updates the "
        "event (its SEQUENCE is raised) or, with method cancel, cancels it. Omitted: a new one, "
        "returned in the message's invitation.uid.",
    )
    start: AwareTime
    end: AwareTime
    timezone: TimeZoneName = Field(description="An IANA zone, such as Europe/Berlin.")
    location: Annotated[str, StringConstraints(max_length=500)] | None = None
    online_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    description: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    method: Literal["request", "cancel"] = "request"


class SendMessageRequest(Request):
    subject: Subject | None = Field(
        default=None, description="Required unless template_id is given (then it overrides)."
    )
    text: Body | None = Field(
        default=None, description="Required unless template_id is given (then it overrides)."
    )
    html: Html | None = None
    template_id: uuid.UUID | None = Field(
        default=None,
        description="A stored template: its variant for the candidate's language is rendered "
        "with the merge fields (docs/templates.md). A field without a fallback that is empty "
        "refuses the send with 422 naming it.",
    )
    data: TemplateData | None = Field(
        default=None,
        description='Extra merge fields, e.g. {"job": {"title": "Backend engineer"}}.',
    )
    signature: bool = Field(
        default=True, description="Append the sender's signature (the user's or the entity's)."
    )
    send_at: AwareTime | None = Field(
        default=None,
        description="Send later: up to 90 days ahead, with a time zone. The message is "
        "`scheduled` until then; POST /v1/messages/{id}/cancel or PATCH it meanwhile.",
    )
    invitation: InvitationRequest | None = None
    attachment_ids: Annotated[list[uuid.UUID], Field(max_length=20)] | None = Field(
        default=None,
        description="Files uploaded with POST /v1/attachments (within the last day); each "
        "goes with the message.",
    )
    attachments: Annotated[list[TemplateAttachment], Field(max_length=10)] | None = Field(
        default=None,
        description="Small files inline (base64), within the request limit; larger ones: "
        "attachment_ids.",
    )


class AttachmentPublic(Public):
    id: uuid.UUID
    filename: str
    content_type: str
    size: int
    original_sender: str | None = None  # an attached message's author
    # An inline image's Content-ID: html_safe shows it from this attachment's download URL.
    content_id: str | None = None


class MessageUpdate(Request):
    """A scheduled message's changes (409 once it is no longer scheduled)."""

    subject: Subject | None = None
    text: Body | None = None
    html: Html | None = None
    send_at: AwareTime | None = None
    attachment_ids: Annotated[list[uuid.UUID], Field(max_length=20)] | None = Field(
        default=None,
        description="The message's files from now on: uploads (POST /v1/attachments) that "
        "replace the ones it had; [] removes them.",
    )


class MessageSegment(BaseModel):
    kind: Literal["new", "quoted", "signature", "forwarded"]
    text: str


class MessagePublic(Public):
    id: uuid.UUID
    candidate_id: uuid.UUID | None
    direction: str
    status: str
    error: str | None
    kind: str
    match_reason: str | None
    match_detail: str | None
    message_id_header: str
    from_address: str
    from_name: str
    forwarded_from: str | None = None  # a colleague's forward: the original sender
    forwarded_from_name: str | None = None
    to_addresses: list[str]
    subject: str
    text: str = Field(description="The whole text body, quoted history included.")
    html: str | None = Field(
        description="The HTML body exactly as the sender wrote it: never show it as is (it may "
        "hold scripts and trackers); show html_safe."
    )
    segments: list[MessageSegment] | None = Field(
        default=None,
        description="Inbound: every line of text, in order, as runs of one kind: new (what the "
        "sender wrote), quoted (the history their client quoted, with its attribution: above, "
        "between or below the answers), signature (their sign-off), forwarded (a message passed "
        "on). A line whose kind is in doubt is new. Null for outbound messages.",
    )
    reply_text: str | None = Field(
        default=None,
        description="Inbound: what the sender wrote: the new segments joined, a blank line "
        "between two (interleaved answers each kept, the quotes between them left out); the "
        "whole text when it has no new segment (a message that is only a quote). Null for "
        "outbound messages.",
    )
    quoted_text: str | None = Field(
        default=None,
        description="Inbound: the quoted and forwarded segments joined, or null when there are "
        "none.",
    )
    signature: str | None = Field(
        default=None,
        description="Inbound: the signature segment (the sign-off ending the sender's text, not "
        "part of reply_text), when it can be told apart; otherwise null.",
    )
    html_safe: str | None = Field(
        default=None,
        description="The HTML made safe to show: no scripts, event handlers, forms or "
        'javascript: links; links with rel="noopener noreferrer"; cid: images from this '
        "message's attachments; remote images as a placeholder unless ?remote_images=1.",
    )
    reply_html_safe: str | None = Field(
        default=None,
        description="html_safe without the quoted history (the HTML view of reply_text): each "
        "quoted block folded out by itself, so interleaved answers stay where they were "
        "written; the same as html_safe when the history could not be folded safely.",
    )
    received_via: str | None = Field(
        default=None,
        description="Inbound: how it reached Recruitmail: smtp, raw, mailjet (the webhooks), or "
        "graph or gmail (read from the connected mailbox).",
    )
    sender_verified: bool | None = Field(
        default=None,
        description="Inbound: true when DMARC verified the From domain, false when it failed "
        "(then sender_auth says why; a domain with a quarantine or reject policy gets no routing "
        "by its sender alone), null when the domain asks nothing or it was not checked.",
    )
    sender_auth: str | None = Field(
        default=None,
        description='Inbound: the checks, as "dmarc=fail (p=reject) spf=fail dkim=none".',
    )
    html_note: str | None = Field(
        default=None,
        description="Inbound: why the HTML is not shown (it is beyond what Recruitmail parses: "
        "nested too deep, or too many formatting elements left open); the text is shown instead. "
        "html_safe is null then.",
    )
    attempts: int
    workflow_id: str | None
    created_at: datetime
    sent_at: datetime | None
    send_at: datetime | None = Field(
        default=None,
        description="Outbound sent later (or held for the undo window): when its first attempt "
        "is, or was, due.",
    )
    template_id: uuid.UUID | None = None
    template_language: str | None = Field(
        default=None, description="The template variant's language that was rendered."
    )
    invitation: dict[str, Any] | None = Field(
        default=None,
        description="An interview invitation it carried: uid, sequence, method, start, end, "
        "timezone; `answer` (accepted, declined, tentative) once the candidate's calendar "
        "replied, with `answered_at`.",
    )
    attachments: list[AttachmentPublic] = Field(default_factory=list)


class AssignRequest(Request):
    candidate_id: uuid.UUID
    remember_address: bool = False


class CandidateFromMessage(Request):
    """Overrides for a candidate made from an emailed application; by default the name and
    address are the message's sender's."""

    name: HeaderText | None = None
    email: EmailAddress | None = None
    legal_entity_id: uuid.UUID | None = None


# -- connections -------------------------------------------------------------------------


class SmtpFields(Request):
    host: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    port: int
    security: Literal["starttls", "tls", "none"]
    verify_certificate: bool = True
    username: EmailAddress
    password: Annotated[SecretStr, Field(min_length=1, max_length=1024)]


InboundPathName = Literal["redirect", "mailbox_sync", "hosted_reply_to"]


class ConnectionCreate(Request):
    kind: Literal["smtp", "google", "microsoft"]
    custom_address: EmailAddress
    legal_entity_id: uuid.UUID | None = None
    smtp: SmtpFields | None = None
    # How replies come in (default: the redirect). With mailbox_sync here, the first sign-in
    # asks for the read permission too.
    inbound_paths: list[InboundPathName] | None = Field(default=None, min_length=1, max_length=3)
    large_files: bool = Field(
        default=False,
        description="Microsoft only: send files over Graph's 4 MB request (up to the mailbox's "
        "maximum, 35 MB by default) as a draft with upload sessions; the sign-in then asks for "
        "Mail.ReadWrite too. Gmail and SMTP take large files without it.",
    )


class ForwardingConfirmationPublic(BaseModel):
    """Gmail's forwarding confirmation code for the address, as it arrived at the hosted
    address: type it into Gmail's Settings → Forwarding to finish the forwarding set-up.
    Recruitmail never confirms it for you."""

    code: str
    received_at: datetime | None = None


class LargeFilesUpdate(Request):
    enabled: bool


class SendModeUpdate(Request):
    # delegated: the signed-in user's Mail.Send; application: Recruitmail's application
    # permission Mail.Send, scoped by the tenant's admin to the mailbox (RBAC for Applications).
    mode: Literal["delegated", "application"]


class InboundPathsUpdate(Request):
    paths: list[InboundPathName] = Field(min_length=1, max_length=3)
    # replies (default): only replies to our mail, known candidates and the check message;
    # all: everything in the mailbox (a mailbox kept for recruiting alone). Audited.
    import_: Literal["replies", "all"] | None = Field(default=None, alias="import")


class InboundPathState(BaseModel):
    path: str
    # active, checking, waiting_for_consent, failing (reason says why and what to do)
    state: str
    reason: str | None = None
    checked_at: datetime | None = None
    # mailbox_sync: the last successful read, and how long the newest import took to arrive.
    last_sync_at: datetime | None = None
    lag_seconds: float | None = None


class InboundPublic(BaseModel):
    """The ways candidates' replies to the connection's address reach Recruitmail."""

    model_config = ConfigDict(populate_by_name=True)

    connection_id: uuid.UUID
    paths: list[str]
    import_: str = Field(serialization_alias="import")
    states: list[InboundPathState]
    # mailbox_sync waits for the read permission: the mailbox's user signs in here (only the
    # new permission is asked; sending goes on meanwhile).
    authorization_url: str | None = None
    admin_consent_url: str | None = None
    # hosted_reply_to: what the Reply-To of a conversation looks like.
    reply_to_example: str | None = None


class SmtpPublic(BaseModel):
    host: str
    port: int
    security: str
    verify_certificate: bool
    username: str


class ConnectionStep(BaseModel):
    name: str
    status: str
    detail: str = ""


class ConnectionPublic(BaseModel):
    id: uuid.UUID
    kind: str
    custom_address: str
    legal_entity_id: uuid.UUID | None
    status: str
    # Where the setup stands; differs from `status` while a live connection is reconnected.
    setup_state: str | None = None
    steps: list[ConnectionStep]
    last_error: str | None
    sending_mailbox: str | None
    large_files: bool = False
    send_mode: str = Field(
        default="delegated",
        description='Microsoft: "delegated" sends with the signed-in user\'s Mail.Send; '
        '"application" with Recruitmail\'s application permission Mail.Send, which the '
        "tenant's admin scopes to this mailbox with Exchange's RBAC for Applications "
        "(docs/connections.md, Application permissions). Other kinds: delegated.",
    )
    mailbox_mode: str | None = Field(
        default=None,
        description='OAuth connections: "own" when the provider lists the address as the '
        "signed-in mailbox's own (itself, an Exchange proxy address, a verified Gmail send-as "
        'alias); "shared" when the signed-in mailbox sends from another mailbox it holds '
        "rights on (a Microsoft shared mailbox: Send As and Full Access). docs/connections.md, "
        "Shared mailboxes.",
    )
    smtp: SmtpPublic | None
    workflow_id: str | None
    authorization_url: str | None = None
    admin_consent_url: str | None = None
    admin_instructions: str | None = None
    # OAuth connections: the setup's page for a person in a browser (where the sign-in lands):
    # where the setup stands, the consent link to copy or email, the next step.
    setup_page_url: str | None = None
    created_at: datetime
    tested_at: datetime | None
    activated_at: datetime | None
    redirect_check: RedirectCheckPublic
    # What still needs the admin's attention, e.g. a live connection whose redirect is not
    # verified (candidates' replies would not reach Recruitmail).
    warnings: list[str] = []
    # How replies come in (GET /v1/connections/{id}/inbound has each path's state).
    inbound_paths: list[str] = ["redirect"]
    forwarding_confirmation: ForwardingConfirmationPublic | None = None
    # The mailbox's quota in effect (PUT /v1/connections/{id}/quota overrides it).
    quota: QuotaPublic | None = None


class QuotaUpdate(Request):
    messages_per_day: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Messages per rolling 24 hours (0: none); null: the provider's default.",
    )
    recipients_per_day: int | None = Field(
        default=None,
        ge=0,
        le=10_000_000,
        description="Recipients (To, Cc, Bcc) per rolling 24 hours (0: none); null: the "
        "provider's default.",
    )


class QuotaPublic(BaseModel):
    messages_per_day: int = Field(description="In effect (0: none).")
    recipients_per_day: int = Field(description="In effect (0: none).")
    per_minute: float = Field(description="Messages per minute for bulk sends (0: none).")
    overridden: bool = Field(description="True when the connection sets its own quota.")


class UsePlatformRequest(Request):
    legal_entity_id: uuid.UUID | None = None


class ConnectionSummary(BaseModel):
    id: uuid.UUID
    kind: str
    custom_address: str
    status: str


ScopePublic.model_rebuild()
MailSettingsPublic.model_rebuild()


class DeliverabilityCheck(BaseModel):
    name: Literal["spf", "dkim", "dmarc"]
    status: Literal["pass", "warn", "fail"]
    sentence: str
    record: str | None = Field(
        default=None, description="The DNS record to add or change, exactly, when one fixes it."
    )


class DeliverabilityPublic(BaseModel):
    domain: str
    status: Literal["pass", "warn", "fail"] = Field(description="The worst of the checks.")
    checks: list[DeliverabilityCheck]


class SuppressionCreate(Request):
    address: EmailAddress
    detail: str = Field(default="", max_length=500, description="Why, for the next admin.")


class SuppressionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    address: str | None = Field(
        description="The address; null once its candidate's data was erased (the row then keeps "
        "only a salted hash, and the address stays suppressed)."
    )
    reason: Literal["hard_bounce", "complaint", "soft_bounces", "unsubscribed", "manual"]
    detail: str = Field(description="The diagnostic that put it there, or the admin's note.")
    created_at: datetime


class BulkCreate(Request):
    candidate_ids: list[uuid.UUID]
    subject: Subject | None = Field(
        default=None, description="Required unless template_id is given (then it overrides)."
    )
    text: Body | None = Field(
        default=None, description="Required unless template_id is given (then it overrides)."
    )
    html: Html | None = None
    template_id: uuid.UUID | None = None
    data: TemplateData | None = Field(
        default=None, description="Extra merge fields, the same for every recipient."
    )
    signature: bool = True
    send_at: AwareTime | None = Field(
        default=None, description="Send later: up to 90 days ahead, with a time zone."
    )
    unsubscribe: bool = Field(
        default=True,
        description="One-click unsubscribe (List-Unsubscribe and List-Unsubscribe-Post, RFC "
        "8058) in every message, and opted-out candidates skipped. false for transactional bulk "
        "mail, such as status updates about each candidate's application.",
    )
    attachment_ids: list[uuid.UUID] | None = Field(
        default=None,
        max_length=10,
        description="Uploads (POST /v1/attachments) every recipient gets, with a template's "
        "default files: stored once for the job, within RECRUITMAIL_MAX_MESSAGE_BYTES.",
    )


# -- events and webhooks -------------------------------------------------------------------


class EventPublic(BaseModel):
    """One event: ids, statuses and reasons in `data` (and, for an endpoint that opted in, the
    sender address, the candidate's name and the subject; never a body)."""

    id: uuid.UUID
    type: str
    created_at: datetime
    company_id: uuid.UUID
    data: dict[str, Any]


class EventFeed(BaseModel):
    data: list[EventPublic]
    # Give it as `after` next time: never an event missed or repeated.
    next: str


class WebhookEndpointCreate(Request):
    url: str = Field(max_length=2000)
    event_types: list[str] = Field(min_length=1, max_length=50)
    description: Description = ""
    include_personal_data: bool = False


class WebhookEndpointUpdate(Request):
    url: str | None = Field(default=None, max_length=2000)
    event_types: list[str] | None = Field(default=None, min_length=1, max_length=50)
    description: Description | None = None
    disabled: bool | None = None


class WebhookEndpointPublic(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str
    include_personal_data: bool
    disabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    workflow_id: str
    created_at: datetime
    # Only in the answers to create and rotate-secret: store it, it is not shown again.
    secret: str | None = None


class WebhookAttemptPublic(BaseModel):
    event_id: uuid.UUID
    event_type: str
    attempted_at: datetime
    outcome: str  # delivered, failed, gone
    status_code: int | None
    latency_ms: int
    error: str | None
    response_body: str  # cut to 1 KiB


Days = Annotated[int, Field(ge=1, le=3650)]


class PrivacyPublic(BaseModel):
    notification_names_candidate: bool
    # Erase a candidate this many days after their application closed; null: never by rule.
    erase_after_days_closed: int | None
    # Delete Unassigned messages older than this.
    unassigned_retention_days: int
    # Ask the candidate this many days before the rule erases them; null: do not ask.
    consent_extension_days: int | None


class PrivacyUpdate(Request):
    """Fields left out keep their value; `null` turns a rule off (the two that allow it)."""

    notification_names_candidate: bool | None = None
    erase_after_days_closed: Days | None = None
    unassigned_retention_days: Days | None = None
    consent_extension_days: Annotated[int, Field(ge=1, le=365)] | None = None


class ErasurePublic(Public):
    """An erasure of a candidate's data: `running` until every step is done, then `done`."""

    id: uuid.UUID
    candidate_id: uuid.UUID
    status: str
    reason: str  # request, retention, consent
    messages_cancelled: int
    messages_erased: int
    attachments_deleted: int
    raw_messages_erased: int
    outbox_copies_deleted: int
    workflow_id: str
    created_at: datetime
    finished_at: datetime | None


class MePublic(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    permissions: list[str]
    notify_replies: bool
    title: str | None = None
    signature_text: str | None = None
    signature_html: str | None = None  # as stored: sanitised


class MeUpdate(Request):
    notify_replies: bool | None = None
    title: Annotated[str, StringConstraints(max_length=200)] | None = None
    signature_text: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    signature_html: Annotated[str, StringConstraints(max_length=50_000)] | None = None


# -- templates -----------------------------------------------------------------------------


class TemplateVariant(Request):
    language: Language
    subject: Subject
    text: Body
    html: Html | None = None


TemplateType = Literal["rejection", "invitation", "offer", "update", "other"]


class TemplateCreate(Request):
    name: HeaderText
    type: TemplateType = "other"
    legal_entity_id: uuid.UUID | None = None
    variants: Annotated[list[TemplateVariant], Field(min_length=1, max_length=50)]
    sender: Literal["company", "employee"] | None = Field(
        default=None,
        description="The sender's name on mail from it (default: the company's setting).",
    )
    attachments: Annotated[list[TemplateAttachment], Field(max_length=10)] | None = None


class TemplateUpdate(Request):
    name: HeaderText | None = None
    type: TemplateType | None = None
    legal_entity_id: uuid.UUID | None = None
    variants: Annotated[list[TemplateVariant], Field(min_length=1, max_length=50)] | None = None
    sender: Literal["company", "employee"] | None = None
    attachments: Annotated[list[TemplateAttachment], Field(max_length=10)] | None = None


class TemplatePublic(Public):
    id: uuid.UUID
    name: str
    type: str
    legal_entity_id: uuid.UUID | None
    variants: list[dict[str, Any]]
    sender: str | None
    attachments: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Default attachments: filename, content_type, size, sha256 (not the bytes).",
    )
    fields: list[str] = Field(default_factory=list, description="The merge fields it uses.")
    created_at: datetime
    updated_at: datetime


class TemplatePreviewRequest(Request):
    candidate_id: uuid.UUID | None = None
    language: Language | None = Field(default=None, description="Preview this variant.")
    data: TemplateData | None = Field(
        default=None, description="Sample fields, over (or instead of) a candidate's."
    )


class TemplatePreview(BaseModel):
    language: str
    subject: str
    text: str
    html: str | None
    missing: list[str] = Field(
        default_factory=list,
        description="Fields without a fallback that are empty here: a send would be refused.",
    )


class LegalEntityUpdate(Request):
    name: HeaderText | None = None
    signature_text: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    signature_html: Annotated[str, StringConstraints(max_length=50_000)] | None = None


class AuditEventPublic(BaseModel):
    id: uuid.UUID
    action: str
    target: str
    detail: dict
    user_id: uuid.UUID | None
    user_name: str | None
    created_at: datetime


class BulkCounts(BaseModel):
    queued: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0  # on the suppression list: never sent (each message's error says why)


class BulkJobPublic(BaseModel):
    id: uuid.UUID
    status: str
    total: int
    counts: BulkCounts
    progress: float  # share of recipients with a final status, 0 to 1
    next_send_at: datetime | None  # while a mailbox throttle holds the job back
    # When the mailbox's 24-hour quota (messages or recipients) lets the next message go.
    waiting_for_quota_until: datetime | None = None
    waiting_reason: str | None = None  # why the job waits, in words
    subject: str
    send_at: datetime | None = None  # send later: when the job starts (status `scheduled`)
    template_id: uuid.UUID | None = None
    # The files every recipient gets: name, type and size (stored once until the job ends).
    files: list[dict[str, Any]] = []
    workflow_id: str | None
    created_at: datetime
    finished_at: datetime | None


class BulkDryRun(BaseModel):
    """What the bulk send would do, nothing sent: each recipient whose message would lack a
    field without a fallback (the real send refuses then, and sends nothing)."""

    dry_run: bool = True
    total: int
    would_send: int
    would_fail: list[dict[str, Any]]
