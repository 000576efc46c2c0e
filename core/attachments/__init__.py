"""Files to send, the capability word `attachments`: a send copies what it uses, and an upload
is deleted a day after it was made, used or not (the worker's sweep)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col

from core.models import Upload, utcnow

UPLOAD_LIFETIME = timedelta(days=1)


def purge(session: Session, now: datetime | None = None) -> int:
    """Delete the uploads made more than a day ago; how many."""
    result = session.execute(
        delete(Upload).where(col(Upload.created_at) < (now or utcnow()) - UPLOAD_LIFETIME)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
