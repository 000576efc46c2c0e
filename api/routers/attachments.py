"""POST /v1/attachments: a file to send, uploaded once (a multipart form with one field, `file`),
then named by single sends in `attachment_ids`. Bounded before it is read
(RECRUITMAIL_MAX_ATTACHMENT_BYTES); a transfer that stops halfway stores nothing."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import Recruiter, SessionDep, SettingsDep
from api.errors import ErrorResponse
from api.schemas import UploadPublic
from api.services import attachments as service

router = APIRouter(tags=["messages"])

_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


@router.post(
    "/v1/attachments",
    response_model=UploadPublic,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_FORM,
    responses={415: {"model": ErrorResponse, "description": "Not a multipart/form-data form."}},
)
async def upload_attachment(
    request: Request, user: Recruiter, session: SessionDep, settings: SettingsDep
) -> UploadPublic:
    """Upload a file to send: up to RECRUITMAIL_MAX_ATTACHMENT_BYTES (25 MiB by default). The
    answer's `id` goes in a single send's `attachment_ids` within a day; the upload is deleted
    after that, used or not (a send keeps its own copy)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "file: send a multipart/form-data form with one field named file",
        )
    async with request.form(max_files=1, max_fields=1) as form:
        item = form.get("file")
        if not isinstance(item, UploadFile) or len(form) != 1:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "file: send exactly one field, named file, holding the file",
            )
        # The form spooled the file to disk past 1 MiB: it is read back and stored a chunk
        # at a time, never whole in memory.
        upload = await run_in_threadpool(
            service.store,
            session,
            settings,
            user,
            item.filename or "",
            item.content_type or "",
            item.file.read,
        )
    return UploadPublic(
        id=upload.id, filename=upload.filename, size=upload.size, content_type=upload.content_type
    )
