"""Dependencies shared by the routers: settings, DB session, caller, Temporal client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.client import Client

from core.models import Permission, User
from core.security import hash_token
from core.settings import Settings
from core.temporal import connect


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session per request. An async dependency on purpose: closing it (which returns its
    database connection to the pool) then needs no worker thread. A sync one is closed in the
    thread pool, and under load every thread can be waiting for a connection that only such a
    close would return: a deadlock until the pool's timeout (found by bench/send_throughput.py
    at 64 requests at once)."""
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]

_bearer = HTTPBearer(auto_error=False)


def current_user(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Missing bearer token: send 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    user = session.exec(
        select(User).where(User.token_hash == hash_token(credentials.credentials))
    ).first()
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "The bearer token is not valid.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require(permission: Permission):
    def check(user: CurrentUser) -> User:
        if permission not in user.permissions:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"This needs the '{permission}' permission."
            )
        return user

    return check


SettingsAdmin = Annotated[User, Depends(require(Permission.RECRUITING_SETTINGS))]
Recruiter = Annotated[User, Depends(require(Permission.MESSAGING))]
Operator = Annotated[User, Depends(require(Permission.OPERATOR))]


def user_for_token(session: Session, token: str) -> User | None:
    return session.exec(select(User).where(User.token_hash == hash_token(token))).first()


class TemporalGateway:
    """Connects lazily, so the API starts (and answers /healthz) while Temporal is still booting."""

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._settings = settings
        self._client = client
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await connect(self._settings)
        return self._client


async def temporal_client(request: Request) -> Client:
    try:
        return await request.app.state.temporal.client()
    except Exception as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "The workflow service (Temporal) is not reachable; try again shortly.",
        ) from exc


TemporalDep = Annotated[Client, Depends(temporal_client)]
