"""Files to send, the capability word `attachments`: a send copies what it uses, and an upload
is deleted a day after it was made, used or not (the worker's sweep).

Every stored file (an upload, a message's attachment, sent or received, a bulk send's file)
is encrypted at rest with the key ring (AES-GCM, the row's id bound in as associated data, so a
blob cannot be moved to another row); `recruitmail keys rotate` re-encrypts them under the
newest key. Rows written before that have `sealed` false and are read as they are.

A file over one chunk (1 MiB) that arrives as a stream (an upload) is stored as FileChunk rows,
each sealed with the file's id, its place and whether it is the last bound in (a chunk cannot
move to another file or place, and a file cut short does not open). Such a file is written,
copied and read one chunk at a time, so a 25 MiB upload and its send hold a few MiB of it in
memory, not several copies (bench/large_files.py). The row's `content` is then empty and
`chunks` says how many."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert, update
from sqlalchemy import select as core_select
from sqlalchemy.sql import ColumnElement, Select
from sqlmodel import Session, col

from core.errors import TooLarge
from core.models import Attachment, FileChunk, Upload, utcnow
from core.security import SecretBox

UPLOAD_LIFETIME = timedelta(days=1)
CHUNK = 1024 * 1024  # a stored chunk's plaintext


def purge(session: Session, now: datetime | None = None) -> int:
    """Delete the uploads made more than a day ago, and their chunks; how many."""
    old = col(Upload.created_at) < (now or utcnow()) - UPLOAD_LIFETIME
    delete_chunks(session, core_select(col(Upload.id)).where(old))
    result = session.execute(delete(Upload).where(old))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def delete_chunks(session: Session, file_ids: Select[Any]) -> None:
    """Delete the chunks of the files `file_ids` (a select of ids) names, before their rows."""
    session.execute(delete(FileChunk).where(col(FileChunk.file_id).in_(file_ids.scalar_subquery())))


def delete_attachments(session: Session, where: ColumnElement[bool]) -> int:
    """Delete the message attachments `where` picks, their chunks first; how many."""
    delete_chunks(session, core_select(col(Attachment.id)).where(where))
    result = session.execute(delete(Attachment).where(where))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _chunk_ad(file_id: uuid.UUID, seq: int, last: bool) -> bytes:
    return file_id.bytes + seq.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


@dataclass(frozen=True)
class Stored:
    """What storing a stream found: the file's size and SHA-256, how many chunks (0: it fit in
    one, sealed into `content`), and that content."""

    size: int
    sha256: str
    chunks: int
    content: bytes


def store_stream(
    session: Session,
    box: SecretBox,
    file_id: uuid.UUID,
    read: Callable[[int], bytes],
    limit: int,
    what: str,
) -> Stored:
    """Store what `read(n)` gives until it gives nothing: one chunk in hand at a time, each
    inserted as it is sealed (the caller's transaction: a stream that fails halfway, or goes
    over `limit` bytes, leaves nothing once it rolls back). `what` names the field in the 413."""
    digest = hashlib.sha256()
    size, seq = 0, 0
    held = read(CHUNK)
    while held:
        size += len(held)
        if size > limit:
            raise TooLarge(f"{what}: over {limit} bytes")
        digest.update(held)
        following = read(CHUNK)
        if seq == 0 and not following:  # one chunk only: the row's own content
            return Stored(size, digest.hexdigest(), 0, seal(box, file_id, held))
        _insert_chunk(session, box, file_id, seq, held, last=not following)
        held, seq = following, seq + 1
    return Stored(size, digest.hexdigest(), seq, seal(box, file_id, b"") if seq == 0 else b"")


def _insert_chunk(
    session: Session, box: SecretBox, file_id: uuid.UUID, seq: int, data: bytes, last: bool
) -> None:
    sealed = box.encrypt(data, associated_data=_chunk_ad(file_id, seq, last))
    session.execute(insert(FileChunk).values(file_id=file_id, seq=seq, content=sealed))


def copy_chunks(
    session: Session, box: SecretBox, source: uuid.UUID, target: uuid.UUID, chunks: int
) -> None:
    """A chunked file's chunks again under another file's id (a send's copy of an upload), one
    at a time."""
    for seq, data in enumerate(_opened_chunks(session, box, source, chunks)):
        _insert_chunk(session, box, target, seq, data, last=seq == chunks - 1)


def _open_chunk(
    session: Session, box: SecretBox, file_id: uuid.UUID, seq: int, chunks: int
) -> bytes:
    sealed = session.execute(
        core_select(col(FileChunk.content)).where(
            col(FileChunk.file_id) == file_id, col(FileChunk.seq) == seq
        )
    ).scalar_one_or_none()
    if sealed is None:
        raise ValueError(f"file {file_id} is missing its chunk {seq + 1} of {chunks}")
    return box.decrypt(sealed, associated_data=_chunk_ad(file_id, seq, seq == chunks - 1))


def _opened_chunks(
    session: Session, box: SecretBox, file_id: uuid.UUID, chunks: int
) -> Iterator[bytes]:
    for seq in range(chunks):
        yield _open_chunk(session, box, file_id, seq, chunks)


def pieces(
    session: Session, box: SecretBox, file_id: uuid.UUID, content: bytes, sealed: bool, chunks: int
) -> Iterator[bytes]:
    """A stored file's plaintext, a chunk at a time (one piece when it is not chunked)."""
    if chunks == 0:
        yield opened(box, file_id, content, sealed)
        return
    yield from _opened_chunks(session, box, file_id, chunks)


def read_all(
    session: Session, box: SecretBox, file_id: uuid.UUID, content: bytes, sealed: bool, chunks: int
) -> bytes:
    """A stored file's plaintext, whole (a download, an export, a bulk send's file)."""
    return b"".join(pieces(session, box, file_id, content, sealed, chunks))


async def stream(
    engine: Engine,
    box: SecretBox,
    file_id: uuid.UUID,
    chunks: int,
    content: bytes = b"",
    sealed: bool = True,
) -> AsyncIterator[bytes]:
    """A stored file's plaintext for async code (a provider's upload), each chunk read in a
    thread, in a session of its own; `content` and `sealed` are the row's, for a file that is
    not chunked."""
    if chunks == 0:
        yield await asyncio.to_thread(opened, box, file_id, content, sealed)
        return
    for seq in range(chunks):
        yield await asyncio.to_thread(_read_chunk, engine, box, file_id, seq, chunks)


def _read_chunk(engine: Engine, box: SecretBox, file_id: uuid.UUID, seq: int, chunks: int) -> bytes:
    with Session(engine) as session:
        return _open_chunk(session, box, file_id, seq, chunks)


def reseal_chunks(engine: Engine, box: SecretBox) -> tuple[int, int]:
    """Every chunk under the newest key (recruitmail keys rotate), one chunk in memory at a
    time: (rotated, already current)."""
    rotated = current = 0
    with Session(engine) as session:
        keys = session.execute(
            core_select(col(FileChunk.file_id), col(FileChunk.seq)).order_by(
                col(FileChunk.file_id), col(FileChunk.seq)
            )
        ).all()
    for index, (file_id, seq) in enumerate(keys):
        last = index + 1 == len(keys) or keys[index + 1] != (file_id, seq + 1)
        where = (col(FileChunk.file_id) == file_id, col(FileChunk.seq) == seq)
        with Session(engine) as session, session.begin():
            sealed = session.execute(
                core_select(col(FileChunk.content)).where(*where)
            ).scalar_one_or_none()
            if sealed is None:
                continue  # deleted meanwhile
            resealed = box.reseal(sealed, associated_data=_chunk_ad(file_id, seq, last))
            if resealed is None:
                current += 1
                continue
            session.execute(update(FileChunk).where(*where).values(content=resealed))
            rotated += 1
    return rotated, current


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
