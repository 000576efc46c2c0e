"""What the readiness check asks of the database: that it answers."""

from __future__ import annotations

from sqlalchemy import Engine

from core.db import ping


def database_answers(engine: Engine) -> None:
    """Raises when the database does not answer."""
    ping(engine)
