"""The database engine and session helpers, identical on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, SQLModel, create_engine

T = TypeVar("T", bound=SQLModel)
R = TypeVar("R")


def make_engine(url: str, *, sqlite_busy_timeout: float = 30.0) -> Engine:
    """The engine for `url`. On SQLite a write waits up to `sqlite_busy_timeout` seconds for
    the lock, SQLite polling for it at growing intervals (up to 100 ms); a short one, with
    retry_while_locked around the write, polls every millisecond instead."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            # All the mail is in this file: readable by its owner alone (SQLite gives its
            # journal and WAL files the database file's mode).
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).touch(mode=0o600, exist_ok=True)
            os.chmod(path, 0o600)
        # A connection per concurrent request or activity thread (the worker runs 32).
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": sqlite_busy_timeout},
            pool_size=20,
            max_overflow=40,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=30)


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    # WAL lets the API read while the worker writes; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted and overwritten content is zeroed, not left in free pages: an erased candidate's
    # mail cannot be read back from the file (the erasure also checkpoints the WAL).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def retry_while_locked(
    write: Callable[..., R], *args: Any, patience: float = 30.0, poll: float = 0.001
) -> R:
    """Run `write` (a whole transaction), again while SQLite answers "database is locked",
    for up to `patience` seconds. Any other error, and a lock past that, is raised."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return write(*args)
        except OperationalError as err:
            if "database is locked" not in str(err.orig) or time.monotonic() > deadline:
                raise
        time.sleep(poll)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


class RowMissing(LookupError):
    """A row an activity was given by id no longer exists. Permanent: retrying cannot bring it
    back, so the retry policies list this class by name as non-retryable."""


def get_or_fail(session: Session, model: type[T], row_id: uuid.UUID | str) -> T:
    """The row with this id, or RowMissing naming what is missing."""
    key = row_id if isinstance(row_id, uuid.UUID) else uuid.UUID(str(row_id))
    row = session.get(model, key)
    if row is None:
        raise RowMissing(f"{model.__name__} {key} does not exist (it was deleted).")
    return row


def ping(engine: Engine) -> None:
    """The database answers (raises when it does not): the API's readiness check."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
