"""One status vocabulary for every process: the database's columns and the workflows' states.

Light on purpose (the standard library only): workflow modules import it inside Temporal's
sandbox, and the SQLModel tables in core/models.py use the same enums for their columns.
"""

from __future__ import annotations

from enum import StrEnum


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    BOUNCED = "bounced"
    SCHEDULED = "scheduled"  # send later, or within the undo window: not tried yet
    RECEIVED = "received"
    CANCELLED = "cancelled"  # a bulk send was cancelled before this message went out
    SKIPPED = "skipped"  # a bulk send left out a recipient on the suppression list


class MessageKind(StrEnum):
    """What an inbound message is: a person's mail, or automated mail we never answer."""

    MAIL = "mail"
    AUTO_REPLY = "auto_reply"  # out-of-office and other Auto-Submitted mail
    BOUNCE = "bounce"  # a delivery status notification saying a message failed


class InboundState(StrEnum):
    STORED = "stored"  # raw bytes safe; routing not yet done
    ROUTED = "routed"  # a Message row exists for it
    DUPLICATE = "duplicate"  # the same Message-ID already reached this company
    CHECK = "check"  # a connection test's own message, back through the redirect: consumed
    ANSWER = "answer"  # a candidate's calendar answering an invitation: recorded on it


class MatchReason(StrEnum):
    TOKEN = "token"  # the reply-to token of the address it was sent to
    THREAD = "thread"
    SENDER = "sender"
    MANUAL = "manual"
    NONE = "none"


class ConnectionKind(StrEnum):
    SMTP = "smtp"
    GOOGLE = "google"
    MICROSOFT = "microsoft"


# How each kind is named to people ("The Microsoft connection for …").
KIND_LABELS = {
    ConnectionKind.SMTP: "SMTP",
    ConnectionKind.GOOGLE: "Google",
    ConnectionKind.MICROSOFT: "Microsoft",
}
OAUTH_KINDS = (ConnectionKind.GOOGLE.value, ConnectionKind.MICROSOFT.value)


class ConnectionStatus(StrEnum):
    # OAuth setups (Google, Microsoft)
    AWAITING_AUTHORIZATION = "awaiting_authorization"  # waiting for the person to sign in
    AUTHORIZING = "authorizing"  # the sign-in came back; exchanging the code
    AWAITING_ADMIN_CONSENT = "awaiting_admin_consent"  # an administrator must approve the app
    AUTHORIZED = "authorized"  # signed in as the custom address; being tested
    FAILED = "failed"  # the setup ended without a usable grant; `last_error` says why
    # SMTP setups
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
# A connection that has ended: nothing about it changes any more.
ENDED_STATUSES = (
    ConnectionStatus.CANCELLED,
    ConnectionStatus.FAILED,
    ConnectionStatus.EXPIRED,
    ConnectionStatus.DISABLED,
)
# Nobody has signed in yet: a change of permissions goes into the coming sign-in.
SIGN_IN_PENDING = (ConnectionStatus.AWAITING_AUTHORIZATION, ConnectionStatus.AWAITING_ADMIN_CONSENT)
# A setup still under way; its workflow is running.
SETUP_STATUSES = (
    ConnectionStatus.AWAITING_AUTHORIZATION,
    ConnectionStatus.AUTHORIZING,
    ConnectionStatus.AWAITING_ADMIN_CONSENT,
    ConnectionStatus.AUTHORIZED,
    ConnectionStatus.PENDING,
    ConnectionStatus.TESTING,
    ConnectionStatus.TESTED,
    ConnectionStatus.TEST_FAILED,
)


class BulkJobStatus(StrEnum):
    SCHEDULED = "scheduled"  # send later: waits for its time
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class InboundKind(StrEnum):
    """How an operator filters routed inbound runs (the MailStatus search attribute)."""

    RECEIVED = "received"  # routed to a candidate
    UNASSIGNED = "unassigned"
    DUPLICATE = "duplicate"


class RoutingState(StrEnum):
    """What a receive-message run ended with."""

    ROUTED = "routed"
    DUPLICATE = "duplicate"
    CHECK = "check"  # a connection test's message: consumed, never shown
    ANSWER = "answer"  # an interview invitation's answer: recorded on the invitation


class RedirectStatus(StrEnum):
    """The redirect leg of a connection's round-trip test."""

    NOT_CHECKED = "not_checked"  # no test has sent a message yet
    WAITING = "waiting"  # the test message went out; waiting for it to come back
    VERIFIED = "verified"  # it came back through the company's redirect to the hosted address
    NOT_SEEN = "not_seen"  # it did not come back in time; `redirect_detail` says what to set up
    BLOCKED = "blocked"  # a delivery report came back instead: the redirect is refused, and why


class InboundPath(StrEnum):
    """The ways replies to a custom address reach Recruitmail."""

    REDIRECT = "redirect"  # the company's mail system redirects the address to the hosted one
    MAILBOX_SYNC = "mailbox_sync"  # Recruitmail reads the connected mailbox
    HOSTED_REPLY_TO = "hosted_reply_to"  # outbound mail's Reply-To is a hosted token address


class PathState(StrEnum):
    ACTIVE = "active"
    CHECKING = "checking"  # a check message is on its way (the redirect)
    WAITING_FOR_CONSENT = "waiting_for_consent"  # the read permission is being granted
    FAILING = "failing"  # `reason` says why and what to do
    OFF = "off"


class InboundChannel(StrEnum):
    """How a received message reached Recruitmail (`received_via`)."""

    SMTP = "smtp"
    RAW = "raw"  # POST /inbound/raw
    MAILJET = "mailjet"
    GRAPH = "graph"  # mailbox sync, Microsoft
    GMAIL = "gmail"  # mailbox sync, Google


SYNC_CHANNELS = {"microsoft": InboundChannel.GRAPH.value, "google": InboundChannel.GMAIL.value}


class ImportScope(StrEnum):
    REPLIES = "replies"  # replies to our mail, mail from known candidates, the check message
    ALL = "all"  # everything addressed to the recruiting address (dedicated mailboxes)


class ExchangeOutcome(StrEnum):
    """What redeeming an OAuth callback led to."""

    AUTHORIZED = "authorized"
    CONSENT_REQUIRED = "consent_required"
    RETRY_SIGNIN = "retry_signin"
    FAILED = "failed"


class StepStatus(StrEnum):
    """How one step of a connection test went."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
    WARNING = "warning"  # passed with a caveat, or failed without blocking activation
    WAITING = "waiting"  # still under way (the redirect leg)


class SuppressionReason(StrEnum):
    """Why an address is on a company's suppression list (core/deliverability/suppression.py)."""

    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    SOFT_BOUNCES = "soft_bounces"
    UNSUBSCRIBED = "unsubscribed"
    MANUAL = "manual"
