"""The page a candidate opens from the retention question (docs/privacy.md): may the company
keep their application? Two buttons, keep and delete now. The signed key in the link is the
permission; opening the page (a mail scanner may) changes nothing, only a button does."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from api.rendering import error_page, render
from api.routers.pages import read_form
from api.runs import start_erasure
from api.services import privacy as privacy_service
from contracts.privacy import ANSWER
from core.models import Candidate, Company, CompanyPrivacy, utcnow
from core.privacy import consent_deadline, retention_consent_key_valid
from core.run_ids import consent_workflow_id

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)
# How long a button waits for the answer to be recorded before the page shows it.
ANSWER_WAIT_SECONDS = 10.0

_NOTICES = {
    "keep": ("ok", "Thank you: your application is kept."),
    "delete": ("ok", "Your data is being deleted. Nothing more is sent to you."),
    "late": (
        "info",
        "The question has closed: there is nothing to keep any more. You can still delete your "
        "data now.",
    ),
}


@dataclass
class RetentionConsentView:
    title: str
    lead: str
    deadline_label: str = ""
    deadline: str = ""
    keep_for: str = ""
    can_keep: bool = False
    can_delete: bool = False


def _view(
    candidate: Candidate, company: Company, privacy: CompanyPrivacy | None
) -> RetentionConsentView:
    now = utcnow()
    if candidate.erased_at is not None:
        return RetentionConsentView(
            "Your data has been deleted",
            f"{company.name} no longer holds your messages, their attachments or your contact "
            "details.",
        )
    if candidate.erasure_requested_at is not None:
        return RetentionConsentView(
            "Your data is being deleted",
            f"{company.name} is deleting your messages, their attachments and your contact "
            "details. Nothing more is sent to you.",
        )
    period = (privacy.erase_after_days_closed if privacy else None) or 0
    keep_for = f"for another {period} days" if period else "for longer"
    if candidate.consent_asked_at is not None and privacy is not None:
        return RetentionConsentView(
            f"May {company.name} keep your application?",
            f"Your application to {company.name} is closed. {company.name} would like to keep it, "
            "to contact you about future roles. Choose below.",
            "Deleted on",
            f"{consent_deadline(candidate, privacy):%d %B %Y}",
            keep_for,
            can_keep=True,
            can_delete=True,
        )
    if candidate.retain_until is not None and candidate.retain_until > now:
        return RetentionConsentView(
            "Your application is kept",
            f"You agreed that {company.name} keeps your application. You will be asked again "
            "before this date.",
            "Kept until",
            f"{candidate.retain_until:%d %B %Y}",
            can_delete=True,
        )
    return RetentionConsentView(
        f"Your application to {company.name}",
        f"{company.name} has no question for you at the moment. You can have your messages and "
        "contact details deleted now.",
        can_delete=True,
    )


def _not_found(request: Request) -> HTMLResponse:
    return error_page(
        request,
        "This page is not available",
        "The link is incomplete, was changed, or has expired.",
        "Use the link in the most recent email you received, or reply to that email.",
        status_code=404,
    )


@router.get("/privacy/consent/{candidate_id}", response_class=HTMLResponse)
async def consent_page(
    request: Request,
    candidate_id: uuid.UUID,
    key: Annotated[str, Query()] = "",
    notice: Annotated[str, Query()] = "",
) -> HTMLResponse:
    settings = request.app.state.settings
    if not retention_consent_key_valid(settings, candidate_id, key):
        return _not_found(request)
    rows = privacy_service.retention_page_rows
    loaded = await run_in_threadpool(rows, request.app.state.engine, candidate_id)
    if loaded is None:
        return _not_found(request)
    candidate, company, privacy = loaded
    view = _view(candidate, company, privacy)
    shown = None
    if notice in _NOTICES:
        tone, text = _NOTICES[notice]
        shown = {"tone": tone, "text": text}
    return render(
        request,
        "consent.html",
        title=view.title,
        tone="info",
        lead=view.lead,
        deadline_label=view.deadline_label,
        deadline=view.deadline,
        keep_for=view.keep_for,
        can_keep=view.can_keep,
        can_delete=view.can_delete,
        company=company.name,
        candidate_id=candidate.id,
        key=key,
        notice=shown,
    )


@router.post("/privacy/consent/{candidate_id}", response_class=HTMLResponse)
async def consent_answer(request: Request, candidate_id: uuid.UUID) -> Response:
    """Keep or delete now: tells the candidate's retention-consent run, which records it and
    erases on delete. Without a run (the question closed, or none was asked), delete now
    starts the erasure itself."""
    form = await read_form(request)
    key, answer = form.get("key", ""), form.get("answer", "")
    settings = request.app.state.settings
    if not retention_consent_key_valid(settings, candidate_id, key):
        return _not_found(request)
    if answer not in ("keep", "delete"):
        return error_page(
            request,
            "Choose one of the buttons",
            "The answer was neither keep nor delete.",
            "Go back to the page and choose Keep my application or Delete my data now.",
        )
    engine = request.app.state.engine
    loaded = await run_in_threadpool(privacy_service.retention_page_rows, engine, candidate_id)
    if loaded is None:
        return _not_found(request)
    candidate = loaded[0]
    notice = answer
    if candidate.erasure_requested_at is None:
        client = await request.app.state.temporal.client()
        if not await _tell_run(client, candidate_id, answer):
            if answer == "delete":
                register = privacy_service.register_consent_erasure
                erasure = await run_in_threadpool(register, engine, candidate_id)
                await start_erasure(client, settings, erasure)
            else:
                notice = "late"
    page = f"/privacy/consent/{candidate_id}?{urlencode({'key': key, 'notice': notice})}"
    return RedirectResponse(page, status_code=303)


async def _tell_run(client, candidate_id: uuid.UUID, answer: str) -> bool:
    """Signal the open question's run and wait for it to record the answer; False when no
    question is open."""
    handle = client.get_workflow_handle(consent_workflow_id(str(candidate_id)))
    try:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            return False
        await handle.signal(ANSWER, answer)
    except RPCError:
        return False  # never asked
    try:
        await asyncio.wait_for(handle.result(), ANSWER_WAIT_SECONDS)
    except TimeoutError:
        log.info("the answer of %s is still being recorded", candidate_id)
    except Exception:
        log.warning("the retention question of %s failed", candidate_id, exc_info=True)
    return True
