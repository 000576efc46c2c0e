"""Activities of the connection setups: test, status changes, activation."""

from __future__ import annotations

import asyncio
import json
import uuid

from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.smtp import SmtpSecurity, SmtpTarget, verify_smtp
from core.db import session_scope
from core.models import (
    LIVE_STATUSES,
    AuditEvent,
    Connection,
    ConnectionStatus,
    utcnow,
)
from core.security import SecretBox
from core.settings import Settings
from core.tls import client_tls_context
from workflows.smtp_setup import (
    ActivateInput,
    StatusInput,
    VerificationResult,
    VerificationStep,
)

_WAITING_FOR_BROWSER = (
    ConnectionStatus.AWAITING_AUTHORIZATION,
    ConnectionStatus.AWAITING_ADMIN_CONSENT,
)
_ENDED = (ConnectionStatus.FAILED, ConnectionStatus.EXPIRED, ConnectionStatus.CANCELLED)


def seal_secret(box: SecretBox, connection_id: uuid.UUID, secret: dict) -> bytes:
    # The connection id is bound in as associated data: a blob cannot be moved to another row.
    return box.encrypt(json.dumps(secret).encode(), associated_data=connection_id.bytes)


def open_secret(box: SecretBox, connection: Connection) -> dict:
    if connection.secret_blob is None:
        return {}
    return json.loads(box.decrypt(connection.secret_blob, associated_data=connection.id.bytes))


def smtp_target(box: SecretBox, connection: Connection) -> SmtpTarget:
    return SmtpTarget(
        host=connection.smtp_host or "",
        port=connection.smtp_port or 587,
        security=SmtpSecurity(connection.smtp_security or "starttls"),
        username=connection.smtp_username,
        password=open_secret(box, connection).get("password"),
        verify_certificate=connection.smtp_verify_certificate,
    )


def load_connection(session: Session, connection_id: str) -> Connection:
    connection = session.get(Connection, uuid.UUID(connection_id))
    if connection is None:
        raise ApplicationError(f"connection {connection_id} does not exist", non_retryable=True)
    return connection


class ConnectionActivities:
    def __init__(self, engine: Engine, settings: Settings, box: SecretBox) -> None:
        self._engine = engine
        self._settings = settings
        self._box = box

    @activity.defn(name="verify-smtp-connection")
    async def verify_smtp_connection(self, connection_id: str) -> VerificationResult:
        def load() -> tuple[SmtpTarget, str]:
            with Session(self._engine) as session:
                connection = load_connection(session, connection_id)
                return smtp_target(self._box, connection), connection.custom_address

        target, address = await asyncio.to_thread(load)
        tls = client_tls_context(self._settings.ca_bundle, verify=target.verify_certificate)
        ok, steps, error = await verify_smtp(
            target, address, tls_context=tls, timeout=self._settings.smtp_timeout_seconds
        )

        def store() -> None:
            with session_scope(self._engine) as session:
                connection = load_connection(session, connection_id)
                connection.steps = steps
                connection.tested_at = utcnow()
                connection.last_error = error
                connection.updated_at = utcnow()
                session.add(connection)

        await asyncio.to_thread(store)
        return VerificationResult(
            ok=ok, steps=[VerificationStep(**step) for step in steps], error=error
        )

    @activity.defn(name="set-connection-status")
    def set_connection_status(self, input: StatusInput) -> None:
        with session_scope(self._engine) as session:
            connection = load_connection(session, input.connection_id)
            connection.setup_state = input.status
            connection.updated_at = utcnow()
            if input.status != ConnectionStatus.AWAITING_ADMIN_CONSENT:
                connection.admin_consent_url = None
                connection.admin_instructions = None
            if input.status not in _WAITING_FOR_BROWSER:
                # No sign-in link or state stays usable once the setup has moved on.
                connection.oauth_state_nonce = None
                connection.authorization_url = None
            if input.status in _ENDED:
                connection.oauth_flow_blob = None
                connection.oauth_callback_blob = None
            session.add(connection)
            if connection.status in LIVE_STATUSES:
                return  # a live connection is only changed by use-platform, delete or activate
            connection.status = input.status
            connection.last_error = input.error

    @activity.defn(name="activate-connection")
    def activate_connection(self, input: ActivateInput) -> None:
        """Make this the scope's sender, disabling the one it replaces, in one transaction."""
        with session_scope(self._engine) as session:
            connection = load_connection(session, input.connection_id)
            if connection.status == ConnectionStatus.ACTIVE:
                return  # a retried activation
            replaced = session.exec(
                select(Connection).where(
                    Connection.company_id == connection.company_id,
                    Connection.legal_entity_id == connection.legal_entity_id
                    if connection.legal_entity_id
                    else Connection.legal_entity_id.is_(None),  # type: ignore[union-attr]
                    Connection.status.in_(LIVE_STATUSES),  # type: ignore[attr-defined]
                    Connection.id != connection.id,
                )
            ).all()
            now = utcnow()
            for other in replaced:
                other.status = ConnectionStatus.DISABLED
                other.updated_at = now
                session.add(other)
            connection.status = ConnectionStatus.ACTIVE
            connection.setup_state = ConnectionStatus.ACTIVE
            connection.activated_at = now
            connection.updated_at = now
            connection.last_error = None
            session.add(connection)
            session.add(
                AuditEvent(
                    company_id=connection.company_id,
                    user_id=uuid.UUID(input.user_id),
                    action="connection.activate",
                    target=f"connection:{connection.id}",
                    detail={
                        "kind": connection.kind,
                        "custom_address": connection.custom_address,
                        "legal_entity_id": str(connection.legal_entity_id or ""),
                        "disabled": [str(o.id) for o in replaced],
                    },
                )
            )

    @property
    def all(self) -> list:
        return [self.verify_smtp_connection, self.set_connection_status, self.activate_connection]
