"""Guard rails for custom SMTP connections. Pure: each refusal names the field and the fix."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from sqlmodel import Session

from core import events
from core.models import Connection, utcnow
from core.statuses import ConnectionStatus

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
GOOGLE_SMTP_HOSTS = {"smtp.gmail.com", "smtp.googlemail.com", "smtp-relay.gmail.com"}
OFFICE365_SMTP_HOST = "smtp.office365.com"
MICROSOFT_DIRECT_SEND_SUFFIX = ".mail.protection.outlook.com"


class RuleViolation(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class SmtpSettingsInput:
    custom_address: str
    host: str
    port: int
    security: str
    username: str


def check_host(host: str) -> str:
    host = host.strip().rstrip(".").lower()
    if "://" in host or "/" in host or " " in host:
        raise RuleViolation("smtp.host", "give only the server name, like smtp.example.com")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not _HOSTNAME.match(host):
        raise RuleViolation("smtp.host", f"{host!r} is not a valid host name")
    return host


def check_smtp_connection(data: SmtpSettingsInput, *, allow_insecure: bool) -> None:
    host = data.host
    if data.username.strip().lower() != data.custom_address.lower():
        raise RuleViolation(
            "smtp.username",
            f"must be the custom address {data.custom_address}: the mailbox that signs in is "
            "the one that sends. Shared mailboxes and send-as accounts are not supported.",
        )
    if host in GOOGLE_SMTP_HOSTS:
        raise RuleViolation(
            "smtp.host",
            "Gmail and Google Workspace are connected with Google sign-in, not SMTP: "
            'create the connection with "kind": "google".',
        )
    if host.endswith(MICROSOFT_DIRECT_SEND_SUFFIX):
        raise RuleViolation(
            "smtp.host",
            f"{host} is Microsoft 365 direct send / SMTP relay, which does not sign in as a "
            f"mailbox. Use {OFFICE365_SMTP_HOST} on port 587 with STARTTLS, or connect with "
            'Microsoft sign-in ("kind": "microsoft").',
        )
    if host == OFFICE365_SMTP_HOST and (data.port not in (587, 25) or data.security != "starttls"):
        raise RuleViolation(
            "smtp.port",
            f"{OFFICE365_SMTP_HOST} accepts mailbox sign-in only on port 587 (or 25) with "
            '"security": "starttls".',
        )
    if not 1 <= data.port <= 65535:
        raise RuleViolation("smtp.port", "must be between 1 and 65535 (usually 587 or 465)")
    if data.port == 465 and data.security == "starttls":
        raise RuleViolation("smtp.security", 'port 465 uses implicit TLS: choose "security": "tls"')
    if data.port == 587 and data.security == "tls":
        raise RuleViolation(
            "smtp.security", 'port 587 uses STARTTLS: choose "security": "starttls"'
        )
    if data.security == "none" and not allow_insecure:
        raise RuleViolation(
            "smtp.security",
            "unencrypted SMTP would send the password in clear text; use starttls or tls "
            "(an operator can allow it with RECRUITMAIL_ALLOW_INSECURE_SMTP)",
        )


def listed_as_own(address: str) -> str:
    """How the sign-in's step says the provider lists `address` as the signed-in mailbox's own
    (and how mailbox_mode reads it back)."""
    return f"lists {address} as one of its addresses"


def mailbox_mode(connection: Connection) -> str | None:
    """How an OAuth connection uses its mailbox: as the signed-in mailbox or one of its own
    addresses ("own"), or another mailbox it holds rights on ("shared": a Microsoft shared
    mailbox, Send As and Full Access). None for SMTP."""
    if connection.kind not in ("microsoft", "google"):
        return None
    signed_in = (connection.display_mailbox or "").lower()
    if not signed_in or signed_in == connection.custom_address.lower():
        return "own"
    # The sign-in's step says when the provider lists the address as the mailbox's own.
    own = listed_as_own(connection.custom_address).lower()
    listed = any(own in str(step.get("detail", "")).lower() for step in connection.steps)
    return "own" if listed else "shared"


def mailbox_to_read(connection: Connection) -> str:
    """The mailbox where replies to the address land: the shared mailbox itself, else the
    signed-in one (an alias has no mailbox of its own)."""
    if mailbox_mode(connection) == "shared":
        return connection.custom_address
    return connection.display_mailbox or connection.custom_address


def needs_reauth(session: Session, connection: Connection, reason: str) -> None:
    """The provider refused an active connection's credentials at send time: it needs a new
    sign-in (connection.status_changed tells the company), and is never silently replaced."""
    if connection.status != ConnectionStatus.ACTIVE:
        return
    connection.status = ConnectionStatus.NEEDS_REAUTH
    connection.last_error = reason
    connection.updated_at = utcnow()
    session.add(connection)
    events.connection_changed(session, connection, ConnectionStatus.ACTIVE)
