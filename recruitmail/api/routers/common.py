"""Company-scoped lookups: anything outside the caller's company is simply not found."""

from __future__ import annotations

import uuid
from typing import TypeVar

from fastapi import HTTPException, status
from sqlmodel import Session, SQLModel

from recruitmail.api.deps import parse_id

T = TypeVar("T", bound=SQLModel)


def get_owned(
    session: Session, model: type[T], raw_id: str | uuid.UUID, company_id: uuid.UUID, what: str
) -> T:
    object_id = raw_id if isinstance(raw_id, uuid.UUID) else parse_id(raw_id, what)
    row = session.get(model, object_id)
    if row is None or row.company_id != company_id:  # type: ignore[attr-defined]
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")
    return row
