"""Files to send (POST /v1/attachments, and a send's files): an upload is stored once, checked
and bounded, and a single send copies the files it names (uploads, small inline ones, its
template's defaults) into the message's attachments, within RECRUITMAIL_MAX_MESSAGE_BYTES."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from sqlmodel import Session, col, select

from api.services import templates
from core import attachments as files_at_rest
from core import audit
from core.attachments import UPLOAD_LIFETIME
from core.errors import Refused, TooLarge
from core.models import Attachment, MessageTemplate, Upload, User, utcnow
from core.security import secret_box
from core.settings import Settings

_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$")


def _unprocessable(message: str) -> Refused:
    return Refused(message)


def clean_filename(raw: str | None) -> str:
    """The file's own name, without any folder a client sent with it or control characters."""
    name = PureWindowsPath(PurePosixPath(raw or "").name).name
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:255] or "attachment"


def clean_content_type(raw: str | None) -> str:
    value = (raw or "").split(";")[0].strip().lower()
    return value if _CONTENT_TYPE.match(value) else "application/octet-stream"


def store(
    session: Session,
    settings: Settings,
    user: User,
    filename: str,
    content_type: str,
    read: Callable[[int], bytes],
) -> Upload:
    """Store an upload from `read(n)` (the form's spooled file), one chunk at a time: sealed
    chunks for a file over 1 MiB (core/attachments). Over RECRUITMAIL_MAX_ATTACHMENT_BYTES it
    stops there, and nothing stays."""
    upload_id = uuid.uuid4()
    try:
        stored = files_at_rest.store_stream(
            session,
            secret_box(settings),
            upload_id,
            read,
            settings.max_attachment_bytes,
            "file",
        )
    except TooLarge as err:
        session.rollback()
        raise TooLarge(f"{err} (RECRUITMAIL_MAX_ATTACHMENT_BYTES)") from None
    upload = Upload(
        id=upload_id,
        company_id=user.company_id,
        user_id=user.id,
        filename=clean_filename(filename),
        content_type=clean_content_type(content_type),
        size=stored.size,
        sha256=stored.sha256,
        content=stored.content,
        sealed=True,
        chunks=stored.chunks,
    )
    session.add(upload)
    audit.record(
        session,
        company_id=user.company_id,
        user_id=user.id,
        action="attachment.upload",
        target=f"upload:{upload.id}",
        size=upload.size,
    )
    session.commit()
    return upload


@dataclass(frozen=True)
class File:
    """A file a send carries: its bytes (`content`: a small inline file, a template's), or an
    upload still in storage (`upload`), copied chunk by chunk when the send is queued."""

    filename: str
    content_type: str
    sha256: str
    size: int
    content: bytes | None = None
    upload: Upload | None = None


def files_for_send(
    session: Session,
    settings: Settings,
    company_id: uuid.UUID,
    template: MessageTemplate | None,
    inline: list[Any] | None,
    upload_ids: list[uuid.UUID] | None,
) -> list[File]:
    """Every file a single send carries, checked: uploads of this company from the last day,
    small inline ones, the template's defaults; at most RECRUITMAIL_MAX_MESSAGE_BYTES in all.
    An upload's bytes are not read here (attach copies them)."""
    files = []
    for a in [*templates.attachments_of(template), *(templates.checked_attachments(inline) or [])]:
        data = base64.b64decode(a["content_b64"])
        files.append(File(a["filename"], a["content_type"], a["sha256"], len(data), data))
    wanted = list(dict.fromkeys(upload_ids or []))
    if wanted:
        found = {
            u.id: u
            for u in session.exec(
                select(Upload).where(
                    Upload.company_id == company_id,
                    col(Upload.id).in_(wanted),
                    col(Upload.created_at) > utcnow() - UPLOAD_LIFETIME,
                )
            )
        }
        missing = [str(i) for i in wanted if i not in found]
        if missing:
            raise _unprocessable(
                "attachment_ids: no such upload in your company, or it is more than a day old "
                f"(upload again): {', '.join(missing)}"
            )
        files += [
            File(u.filename, u.content_type, u.sha256, u.size, upload=u)
            for u in map(found.get, wanted)
            if u is not None
        ]
    total = sum(f.size for f in files)
    if total > settings.max_message_bytes:
        raise _unprocessable(
            f"attachments: {total / 1_000_000:.1f} MB in all; a message carries at most "
            f"{settings.max_message_bytes / 1_000_000:.1f} MB (RECRUITMAIL_MAX_MESSAGE_BYTES)"
        )
    return files


def content_of(session: Session, settings: Settings, file: File) -> bytes:
    """A file's bytes, whole (a bulk send stores its files once for the job)."""
    upload = file.upload
    if upload is None:
        return file.content or b""
    return files_at_rest.read_all(
        session, secret_box(settings), upload.id, upload.content, upload.sealed, upload.chunks
    )


def attach(session: Session, settings: Settings, message_id: uuid.UUID, files: list[File]) -> None:
    """The message's own copy of each file: an upload's chunks copied one at a time."""
    box = secret_box(settings)
    for item in files:
        upload = item.upload
        attachment_id = uuid.uuid4()
        chunks = 0
        if upload is not None and upload.chunks:
            files_at_rest.copy_chunks(session, box, upload.id, attachment_id, upload.chunks)
            content, chunks = b"", upload.chunks
        else:
            data = item.content if upload is None else content_of(session, settings, item)
            content = files_at_rest.seal(box, attachment_id, data or b"")
        session.add(
            Attachment(
                id=attachment_id,
                message_id=message_id,
                filename=item.filename,
                content_type=item.content_type,
                size=item.size,
                sha256=item.sha256,
                content=content,
                sealed=True,
                chunks=chunks,
            )
        )
