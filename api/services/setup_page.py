"""What a connection's setup page shows, by the state the setup is in: a title, a tone, what
happened, what to do next, and the links, buttons and checks that go with it. The routes in
api/routers/pages.py render it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, func, select

from core.audit import record_connection
from core.models import AuditEvent, Company, Connection
from core.security import secret_box
from core.settings import Settings
from core.statuses import KIND_LABELS, SETUP_STATUSES, ConnectionKind, ConnectionStatus

S = ConnectionStatus
# The purpose signed into the Google page's "continue" token.
CONSENT_FORM = "consent-form"


@dataclass
class SetupView:
    """What the setup page shows for a connection in its current state."""

    title: str
    tone: str  # ok, info, warn, error
    lead: str
    next_step: str
    reason: str | None = None
    refresh: int | None = None
    sign_in_url: str | None = None
    consent_link: str | None = None
    google_steps: list[str] = field(default_factory=list)
    consent_token: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)


def shown_state(connection: Connection) -> str:
    """A setup under way speaks for the connection (a reconnect of a live one included);
    otherwise its status does."""
    if connection.setup_state in SETUP_STATUSES:
        return connection.setup_state
    return connection.status


def setup_view(settings: Settings, connection: Connection, company: Company) -> SetupView:
    label = KIND_LABELS[ConnectionKind(connection.kind)]
    address = connection.custom_address
    state = shown_state(connection)
    checks = list(connection.steps or [])
    if state == S.AWAITING_AUTHORIZATION:
        return SetupView(
            f"Sign in to connect {address}",
            "warn" if connection.last_error else "info",
            f"Sign in to {label} as {address} itself, so that Recruitmail can send "
            f"{company.name}'s candidate email from it.",
            "Choose “Sign in” and use the mailbox's own account; shared mailboxes and other "
            "accounts are not supported. The test runs by itself right after.",
            reason=connection.last_error,
            sign_in_url=connection.authorization_url,
        )
    if state == S.AUTHORIZING:
        return SetupView(
            "Finishing the sign-in…",
            "info",
            f"{label} sent you back to Recruitmail; the sign-in of {address} is being completed.",
            "This page updates by itself in a moment.",
            refresh=2,
        )
    if state == S.AWAITING_ADMIN_CONSENT:
        return _admin_consent_view(settings, connection, label)
    if state in (S.AUTHORIZED, S.TESTING, S.PENDING):
        return SetupView(
            "Mailbox connected: testing it",
            "info",
            f"Signed in to {label} as {connection.display_mailbox or address}. Recruitmail "
            "is sending a test message through it and waiting for it to come back.",
            "This page updates by itself when the test has run.",
            refresh=3,
            checks=checks,
        )
    if state == S.TESTED:
        return SetupView(
            "Mailbox connected",
            "ok",
            f"Signed in to {label} as {connection.display_mailbox or address}, and the test "
            "message went out.",
            "Return to Recruitmail and activate the connection: from then on, candidate "
            f"email of {company.name} is sent from {address}.",
            checks=checks,
        )
    if state == S.TEST_FAILED:
        return SetupView(
            "Connected, but the test failed",
            "warn",
            f"Signed in to {label} as {connection.display_mailbox or address}, but the test "
            "message did not go through.",
            "Fix what the failed check below says, then test again from Recruitmail.",
            reason=connection.last_error,
            checks=checks,
        )
    if state == S.ACTIVE:
        return SetupView(
            "Connected and active",
            "ok",
            f"Recruitmail sends {company.name}'s candidate email from {address} through {label}.",
            "Nothing more to do here. Return to Recruitmail to see its messages and settings.",
            checks=checks,
        )
    if state == S.NEEDS_REAUTH:
        return SetupView(
            "The mailbox needs a new sign-in",
            "warn",
            f"{label} refused Recruitmail's access to {address}, so candidate email from it "
            "is on hold.",
            "Return to Recruitmail and choose Reconnect for this mailbox.",
            reason=connection.last_error,
        )
    ended: dict[str, str] = {
        S.FAILED: "The mailbox was not connected",
        S.EXPIRED: "This setup expired",
        S.CANCELLED: "This setup was cancelled",
        S.DISABLED: "This connection is no longer used",
    }
    return SetupView(
        ended.get(state, f"This setup is {state}"),
        "error" if state == S.FAILED else "warn",
        f"Nothing is sent from {address} through this connection.",
        "Return to Recruitmail and connect the mailbox again to start a new setup.",
        reason=connection.last_error,
    )


def _admin_consent_view(settings: Settings, connection: Connection, label: str) -> SetupView:
    domain = connection.custom_address.rpartition("@")[2]
    wait = settings.oauth_admin_consent_wait.days or 1
    if connection.admin_consent_url:
        return SetupView(
            "An administrator must approve Recruitmail",
            "warn",
            f"{label} asks an administrator of {domain} to approve Recruitmail before "
            f"{connection.custom_address} can send through it. The setup waits for up to "
            f"{wait} days.",
            "Send the approval link above to an administrator. Once they choose Accept, "
            "reload this page: you will be asked to sign in once more, and the test runs by "
            "itself.",
            reason=connection.last_error,
            consent_link=connection.admin_consent_url,
        )
    token = None
    if connection.oauth_state_nonce:
        token = secret_box(settings).sign(
            {"c": str(connection.id), "p": CONSENT_FORM, "n": connection.oauth_state_nonce},
            settings.oauth_admin_consent_wait.total_seconds() + 86400,
        )
    lines = (connection.admin_instructions or "").splitlines()
    steps = [line.split(". ", 1)[1] for line in lines if line[:1].isdigit() and ". " in line]
    return SetupView(
        "Blocked by your Google Workspace admin",
        "warn",
        f"Google Workspace does not let {connection.custom_address} sign in to Recruitmail "
        f"yet: an administrator of {domain} must allow the app first. The setup waits for up "
        f"to {wait} days.",
        "Once your administrator has done the steps above, choose “Continue”: you sign in "
        "once more, and the test runs by itself.",
        reason=connection.last_error,
        google_steps=steps,
        consent_token=token,
    )


# -- the rows the page shows and writes -------------------------------------------------


def load(engine, connection_id: uuid.UUID) -> tuple[Connection, Company] | None:
    with Session(engine, expire_on_commit=False) as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            return None
        company = session.get(Company, connection.company_id)
        return (connection, company) if company else None


def admin_consent_requests(engine, connection: Connection) -> int:
    with Session(engine) as session:
        return session.exec(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                AuditEvent.target == f"connection:{connection.id}",
                col(AuditEvent.action) == "connection.consent_request_asked",
            )
        ).one()


def record_request(engine, connection: Connection, recipient: str) -> str:
    """The request's audit line, which holds the address; its id goes to the mail's run."""
    with Session(engine) as session:
        asked = record_connection(
            session, connection, None, "connection.consent_request_asked", to=recipient
        )
        session.commit()
        return str(asked.id)
