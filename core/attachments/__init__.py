"""Files to send, the capability word `attachments`: a send copies what it uses, and an upload
is deleted a day after it was made, used or not (the worker's sweep).

Every stored file (an upload, a message's attachment, sent or received, a bulk send's file)
is encrypted at rest with the key ring (AES-GCM, the row's id bound in as associated data, so a
blob cannot be moved to another row); `recruitmail keys rotate` re-encrypts them under the
newest key. Rows written before that have `sealed` false and are read as they are."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col

from core.models import Upload, utcnow
from core.security import SecretBox

UPLOAD_LIFETIME = timedelta(days=1)


def purge(session: Session, now: datetime | None = None) -> int:
    """Delete the uploads made more than a day ago; how many."""
    result = session.execute(
        delete(Upload).where(col(Upload.created_at) < (now or utcnow()) - UPLOAD_LIFETIME)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def seal(box: SecretBox, row_id: uuid.UUID, data: bytes) -> bytes:
    """A file's content as stored: encrypted, bound to its row."""
    return box.encrypt(data, associated_data=row_id.bytes)


def opened(box: SecretBox, row_id: uuid.UUID, content: bytes, sealed: bool) -> bytes:
    """A stored file's content as it was given (a row from before encryption as it is)."""
    return box.decrypt(content, associated_data=row_id.bytes) if sealed else content


def stored_fields(
    box: SecretBox, row_id: uuid.UUID, filename: str, content_type: str, sha256: str, data: bytes
) -> dict[str, Any]:
    """The columns of a file row (an attachment, an upload, a bulk file): its id, its name and
    type, its size and hash, its content sealed."""
    return {
        "id": row_id,
        "filename": filename,
        "content_type": content_type,
        "size": len(data),
        "sha256": sha256,
        "content": seal(box, row_id, data),
        "sealed": True,
    }
