"""Files to send (POST /v1/attachments, and a send's files): an upload is stored once, checked
and bounded, and a single send copies the files it names (uploads, small inline ones, its
template's defaults) into the message's attachments, within RECRUITMAIL_MAX_MESSAGE_BYTES."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
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
    session: Session, settings: Settings, user: User, filename: str, content_type: str, data: bytes
) -> Upload:
    if len(data) > settings.max_attachment_bytes:
        raise TooLarge(
            f"file: {len(data)} bytes; at most {settings.max_attachment_bytes} "
            "(RECRUITMAIL_MAX_ATTACHMENT_BYTES)",
        )
    upload = Upload(
        company_id=user.company_id,
        user_id=user.id,
        **files_at_rest.stored_fields(
            secret_box(settings),
            uuid.uuid4(),
            clean_filename(filename),
            clean_content_type(content_type),
            hashlib.sha256(data).hexdigest(),
            data,
        ),
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
    filename: str
    content_type: str
    content: bytes
    sha256: str


def files_for_send(
    session: Session,
    settings: Settings,
    company_id: uuid.UUID,
    template: MessageTemplate | None,
    inline: list[Any] | None,
    upload_ids: list[uuid.UUID] | None,
) -> list[File]:
    """Every file a single send carries, checked: uploads of this company from the last day,
    small inline ones, the template's defaults; at most RECRUITMAIL_MAX_MESSAGE_BYTES in all."""
    files = [
        File(a["filename"], a["content_type"], base64.b64decode(a["content_b64"]), a["sha256"])
        for a in [
            *templates.attachments_of(template),
            *(templates.checked_attachments(inline) or []),
        ]
    ]
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
        box = secret_box(settings)
        files += [
            File(
                u.filename,
                u.content_type,
                files_at_rest.opened(box, u.id, u.content, u.sealed),
                u.sha256,
            )
            for u in map(found.get, wanted)
            if u is not None
        ]
    total = sum(len(f.content) for f in files)
    if total > settings.max_message_bytes:
        raise _unprocessable(
            f"attachments: {total / 1_000_000:.1f} MB in all; a message carries at most "
            f"{settings.max_message_bytes / 1_000_000:.1f} MB (RECRUITMAIL_MAX_MESSAGE_BYTES)"
        )
    return files


def attach(session: Session, settings: Settings, message_id: uuid.UUID, files: list[File]) -> None:
    box = secret_box(settings)
    for item in files:
        fields = files_at_rest.stored_fields(
            box, uuid.uuid4(), item.filename, item.content_type, item.sha256, item.content
        )
        session.add(Attachment(message_id=message_id, **fields))
