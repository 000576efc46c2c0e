"""One-click unsubscribe (RFC 8058): the URL in every bulk message's List-Unsubscribe header.

A POST with `List-Unsubscribe=One-Click` (what a mailbox provider's Unsubscribe button sends)
opts the candidate out at once, without a login or another click, and answers 200. A GET shows
a page with one button; opening it alone changes nothing (mail scanners follow links). The
signed token in the path is the permission (core/deliverability/unsubscribe.py)."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from api.rendering import error_page, render
from api.routers.pages import read_form
from core.deliverability import unsubscribe
from core.security import secret_box

router = APIRouter(include_in_schema=False)

_NOTICES = {
    "unsubscribed": ("ok", "You are unsubscribed."),
    "subscribed": ("ok", "You will get these messages again."),
}


def _not_found(request: Request) -> HTMLResponse:
    return error_page(
        request,
        "This page is not available",
        "The link is incomplete, was changed, or its candidate's data was deleted.",
        "Use the unsubscribe link in the most recent message you received, or reply to it.",
        status_code=404,
    )


@router.get("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_page(
    request: Request, token: str, notice: Annotated[str, Query()] = ""
) -> HTMLResponse:
    box = secret_box(request.app.state.settings)
    found = await run_in_threadpool(unsubscribe.page_state, request.app.state.engine, box, token)
    if found is None:
        return _not_found(request)
    company, state = found
    title, lead, action, button = _VIEWS[state]
    tone_text = _NOTICES.get(notice)
    return render(
        request,
        "unsubscribe.html",
        title=title.format(company=company),
        tone="info",
        lead=lead.format(company=company),
        company=company,
        token=token,
        action=action,
        button=button,
        notice={"tone": tone_text[0], "text": tone_text[1]} if tone_text else None,
    )


# What the page says in each state: title, lead, the button's action and label.
_VIEWS = {
    unsubscribe.IN: (
        "Unsubscribe from {company}'s bulk mail?",
        "One click, and the messages it sends to many candidates at once stop.",
        "unsubscribe",
        "Unsubscribe",
    ),
    unsubscribe.OUT: (
        "You are unsubscribed from {company}'s bulk mail",
        "You no longer get the messages it sends to many candidates at once.",
        "subscribe",
        "Subscribe again",
    ),
    unsubscribe.BLOCKED: (
        "{company} sends no mail to this address",
        "It is on {company}'s list of addresses it does not mail (mail to it failed, or it "
        "was reported as spam). Reply to {company} if you want its mail again.",
        None,
        "",
    ),
}


_MULTIPART_ONE_CLICK = re.compile(
    rb'name="?List-Unsubscribe"?\r?\n(?:[^\r\n]+\r?\n)*\r?\nOne-Click\r?\n', re.IGNORECASE
)


async def _is_one_click(request: Request, form: dict[str, str]) -> bool:
    """The RFC 8058 body, `List-Unsubscribe=One-Click`, urlencoded (as Gmail and Yahoo send
    it) or as multipart/form-data (which the RFC allows too)."""
    if form.get("List-Unsubscribe") == "One-Click":
        return True
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        return False
    return _MULTIPART_ONE_CLICK.search(await request.body()) is not None


@router.post("/u/{token}")
async def unsubscribe_post(request: Request, token: str) -> Response:
    form = await read_form(request)
    box = secret_box(request.app.state.settings)
    engine = request.app.state.engine
    one_click = await _is_one_click(request, form)
    action = "unsubscribe" if one_click else form.get("action", "")
    if action not in ("unsubscribe", "subscribe"):
        return error_page(
            request,
            "Choose the button",
            "The request said neither unsubscribe nor subscribe.",
            "Go back to the page and use its button.",
        )
    changed = await run_in_threadpool(
        unsubscribe.change,
        engine,
        box,
        token,
        action == "unsubscribe",
        "one_click" if one_click else "page",
    )
    if changed is None:
        if one_click:
            return PlainTextResponse("Unknown or expired unsubscribe link.", status_code=404)
        return _not_found(request)
    if one_click:  # RFC 8058: the provider's request; no page, no redirect
        return PlainTextResponse("Unsubscribed.")
    # The page says what changed; nothing did when the address was on the list already.
    notice = ("unsubscribed" if action == "unsubscribe" else "subscribed") if changed else ""
    query = f"?{urlencode({'notice': notice})}" if notice else ""
    return RedirectResponse(f"/u/{token}{query}", status_code=303)
