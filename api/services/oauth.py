"""The OAuth setups' browser steps, on the database side: a `state` verified and its nonce
spent in the same write as the callback it carries (encrypted), given back when it was spent
for another setup, and the connection and company the pages name. Signed and single-use:
see api/routers/oauth.py."""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, update
from sqlmodel import Session, col

from api.services.setup_page import CONSENT_FORM
from core.audit import record_connection
from core.db import get_or_fail
from core.models import Company, Connection
from core.security import secret_box

# What each kind of state is called on a page.
LINK_NAMES = {"signin": "sign-in link", "admin-consent": "approval link", CONSENT_FORM: "button"}


class StateRefused(ValueError):
    """The state is not one we issued for this step and provider."""


class Spent(Exception):
    """A genuine state whose nonce was already used: the setup has moved on."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection


def consume(
    engine, settings, state: str, purpose: str, provider: str, callback: dict | None
) -> tuple[Connection, str]:
    """Verify the state and spend its nonce, storing the callback (encrypted) in the same write.

    Raises StateRefused for a state we did not issue for this step, Spent for one already used."""
    name = LINK_NAMES.get(purpose, "link")
    box = secret_box(settings)
    try:
        claims = box.verify(state)
        connection_id = uuid.UUID(str(claims["c"]))
    except (ValueError, KeyError) as exc:
        raise StateRefused(f"This {name} is not one Recruitmail issued, or it expired.") from exc
    if claims.get("p") != purpose:
        raise StateRefused(f"This {name} was issued for another step of the setup.")
    with Session(engine, expire_on_commit=False) as session:
        connection = session.get(Connection, connection_id)
        if connection is None or connection.kind != provider:
            raise StateRefused(f"This {name} does not belong to a setup of this provider.")
        values: dict[str, object] = {"oauth_state_nonce": None}
        if callback is not None:
            values["oauth_callback_blob"] = box.seal_json(connection_id, callback)
        spent = session.execute(
            update(Connection)
            .where(
                col(Connection.id) == connection_id,
                col(Connection.oauth_state_nonce) == str(claims["n"]),
            )
            .values(**values)
        )
        session.commit()
        session.refresh(connection)
        if cast(CursorResult[Any], spent).rowcount != 1:
            raise Spent(connection)
        return connection, str(claims["n"])


def company_of(engine: Engine, connection: Connection) -> Company:
    with Session(engine) as session:
        return get_or_fail(session, Company, connection.company_id)


def audit_admin_consent(engine: Engine, connection: Connection) -> None:
    with Session(engine) as session:
        record_connection(
            session, connection, None, "connection.admin_consent_granted", source="admin-page"
        )
        session.commit()


def unspend(engine, connection_id: uuid.UUID, nonce: str) -> None:
    with Session(engine) as session:
        session.execute(
            update(Connection)
            .where(col(Connection.id) == connection_id, col(Connection.oauth_state_nonce).is_(None))
            .values(oauth_state_nonce=nonce, oauth_callback_blob=None)
        )
        session.commit()


def fresh(engine: Engine, connection_id: uuid.UUID) -> Connection:
    with Session(engine, expire_on_commit=False) as session:
        return get_or_fail(session, Connection, connection_id)
