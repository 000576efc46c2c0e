"""Activities of the connection setups: the test, status changes, activation."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import activity

from activities.accounts import Accounts
from core.audit import record_connection
from core.db import get_or_fail, session_scope
from core.models import Connection, utcnow
from core.statuses import LIVE_STATUSES, ConnectionStatus
from workflows.setup import (
    ACTIVATE_CONNECTION,
    SET_CONNECTION_STATUS,
    TEST_CONNECTION,
    ActivateInput,
    ConnectionRef,
    StatusInput,
    VerificationResult,
    VerificationStep,
)

_WAITING_FOR_BROWSER = (
    ConnectionStatus.AWAITING_AUTHORIZATION,
    ConnectionStatus.AWAITING_ADMIN_CONSENT,
)
_ENDED = (ConnectionStatus.FAILED, ConnectionStatus.EXPIRED, ConnectionStatus.CANCELLED)


class ConnectionActivities:
    def __init__(self, engine: Engine, accounts: Accounts) -> None:
        self._engine = engine
        self._accounts = accounts

    @activity.defn(name=TEST_CONNECTION)
    async def test_connection(self, input: ConnectionRef) -> VerificationResult:
        """The provider's verification steps, recorded on the connection as they went."""

        def load() -> tuple[str, object]:
            with Session(self._engine) as session:
                connection = get_or_fail(session, Connection, input.connection_id)
                return connection.kind, self._accounts.account(connection)

        kind, account = await asyncio.to_thread(load)
        provider = self._accounts.provider(kind)
        result = await provider.verify(account)  # type: ignore[arg-type]
        steps = [asdict(step) for step in result.steps]
        kept = provider.setup_steps()

        def store() -> None:
            with session_scope(self._engine) as session:
                connection = get_or_fail(session, Connection, input.connection_id)
                connection.steps = [s for s in connection.steps if s["name"] in kept] + steps
                connection.tested_at = utcnow()
                connection.last_error = result.error
                connection.updated_at = utcnow()
                session.add(connection)

        await asyncio.to_thread(store)
        return VerificationResult(
            ok=result.ok, steps=[VerificationStep(**step) for step in steps], error=result.error
        )

    @activity.defn(name=SET_CONNECTION_STATUS)
    def set_connection_status(self, input: StatusInput) -> None:
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, input.connection_id)
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

    @activity.defn(name=ACTIVATE_CONNECTION)
    def activate_connection(self, input: ActivateInput) -> None:
        """Make this the scope's sender, disabling the one it replaces, in one transaction."""
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, input.connection_id)
            if connection.status == ConnectionStatus.ACTIVE:
                return  # a retried activation
            replaced = session.exec(
                select(Connection).where(
                    Connection.company_id == connection.company_id,
                    col(Connection.legal_entity_id) == connection.legal_entity_id
                    if connection.legal_entity_id
                    else col(Connection.legal_entity_id).is_(None),
                    col(Connection.status).in_(LIVE_STATUSES),
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
            record_connection(
                session,
                connection,
                uuid.UUID(input.user_id),
                "connection.activate",
                kind=connection.kind,
                legal_entity_id=str(connection.legal_entity_id or ""),
                disabled=[str(o.id) for o in replaced],
            )

    @property
    def all(self) -> list:
        return [self.test_connection, self.set_connection_status, self.activate_connection]
