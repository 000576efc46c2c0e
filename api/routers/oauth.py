"""Browser redirect targets of the OAuth setups: the sign-in callback and Microsoft's
admin-consent redirect. Each answers a short HTML page saying what happened and what is next.

The `state` parameter is signed, bound to one connection, and single-use: its nonce is
consumed in the database before anything else happens, so a forged or replayed callback gets
a 400 page and changes nothing. The authorization code is stored encrypted; only the nonce
travels to the workflow.
"""

from __future__ import annotations

import html
import uuid
from typing import Annotated, Any, cast

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from sqlalchemy import CursorResult, Engine, update
from sqlmodel import Session, col
from temporalio.service import RPCError

from api.deps import SettingsDep
from api.services.connections import run_update
from core.db import get_or_fail
from core.models import Connection
from core.security import secret_box
from core.statuses import KIND_LABELS, OAUTH_KINDS, ConnectionKind
from workflows.oauth_setup import CallbackInput, CallbackOutcome, ConsentInput

router = APIRouter(tags=["oauth"])


def _page(title: str, paragraphs: list[str], status_code: int = 200) -> HTMLResponse:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return HTMLResponse(
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>"
        "<body style='font-family:system-ui,sans-serif;max-width:40em;margin:3em auto'>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status_code,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _refused(reason: str) -> HTMLResponse:
    return _page(
        "This link cannot be used",
        [html.escape(reason), "Nothing was changed. Start again from Recruitmail."],
        400,
    )


def _consume(
    engine, settings, state: str, purpose: str, provider: str, callback: dict | None
) -> tuple[Connection, str]:
    """Verify the state and spend its nonce, storing the callback (encrypted) in the same write."""
    box = secret_box(settings)
    try:
        claims = box.verify(state)
        connection_id = uuid.UUID(str(claims["c"]))
    except (ValueError, KeyError) as exc:
        raise ValueError("This sign-in link is not one Recruitmail issued, or it expired.") from exc
    if claims.get("p") != purpose:
        raise ValueError("This link was issued for another step of the setup.")
    with Session(engine, expire_on_commit=False) as session:
        connection = session.get(Connection, connection_id)
        if connection is None or connection.kind != provider:
            raise ValueError("This link does not belong to a setup of this provider.")
        values: dict[str, object] = {"oauth_state_nonce": None}
        if callback is not None:
            values["oauth_callback_blob"] = box.seal_json(connection_id, callback)
        spent = session.execute(
            update(Connection)
            .where(
                col(Connection.id) == connection_id,
                col(Connection.oauth_state_nonce) == str(claims["n"]),
            )
            .values(**values)
        )
        session.commit()
        if cast(CursorResult[Any], spent).rowcount != 1:
            raise ValueError("This link was already used, or the setup has moved on.")
        session.refresh(connection)
        return connection, str(claims["n"])


async def _send(
    request: Request,
    connection: Connection,
    update_name: str,
    arg: object,
    result_type: type | None = None,
) -> object:
    try:
        client = await request.app.state.temporal.client()
    except Exception:
        raise HTTPException(503, "Recruitmail is briefly unavailable; reload this page.") from None
    settings = request.app.state.settings
    return await run_update(
        client,
        connection,
        update_name,
        arg,
        settings.connection_test_wait,
        result_type=result_type,
    )


@router.get("/oauth/microsoft/admin-consent", response_class=HTMLResponse)
async def microsoft_admin_consent(
    request: Request,
    settings: SettingsDep,
    state: Annotated[str, Query()] = "",
    admin_consent: Annotated[str, Query()] = "",
    error: Annotated[str, Query()] = "",
    error_description: Annotated[str, Query()] = "",
) -> HTMLResponse:
    """Where Microsoft sends the administrator after the admin-consent page."""
    if error or admin_consent.lower() != "true":
        return _page(
            "Consent was not granted",
            [
                html.escape(error_description or error or "Microsoft did not confirm consent."),
                "Nothing was changed; the setup keeps waiting for an administrator.",
            ],
            400,
        )
    engine = request.app.state.engine
    try:
        connection, _ = await run_in_threadpool(
            _consume, engine, settings, state, "admin-consent", "microsoft", None
        )
    except ValueError as exc:
        return _refused(str(exc))
    try:
        await _send(
            request,
            connection,
            "admin-consent-granted",
            ConsentInput(source="microsoft-admin-consent"),
        )
    except HTTPException as exc:
        return _refused(str(exc.detail))
    return _page(
        "Consent granted",
        [
            f"Thank you. Recruitmail may now send from {html.escape(connection.custom_address)}.",
            "The person who was connecting the mailbox can now sign in again from Recruitmail "
            "to finish the setup.",
        ],
    )


@router.get("/oauth/{provider}/callback", response_class=HTMLResponse)
async def oauth_callback(
    provider: str, request: Request, settings: SettingsDep, state: Annotated[str, Query()] = ""
) -> HTMLResponse:
    """Where the provider sends the browser after sign-in, with a code or an error."""
    if provider not in OAUTH_KINDS:
        return _refused(f"Unknown provider {provider!r}.")
    query = dict(request.query_params.items())
    engine = request.app.state.engine
    try:
        connection, nonce = await run_in_threadpool(
            _consume, engine, settings, state, "signin", provider, query
        )
    except ValueError as exc:
        return _refused(str(exc))
    try:
        outcome = await _send(
            request,
            connection,
            "complete-authorization",
            CallbackInput(nonce=nonce),
            result_type=CallbackOutcome,
        )
    except (HTTPException, RPCError) as exc:
        if isinstance(exc, RPCError) or exc.status_code == 503:
            # Never delivered (Temporal unreachable): give the link back, so a reload works.
            await run_in_threadpool(_unspend, engine, connection.id, nonce)
            return _page(
                "Please try again",
                ["Recruitmail is briefly unavailable. Reload this page in a moment."],
                503,
            )
        return _refused(str(exc.detail))
    connection = await run_in_threadpool(_fresh, engine, connection.id)
    return outcome_page(connection, cast(CallbackOutcome, outcome))


def _unspend(engine, connection_id: uuid.UUID, nonce: str) -> None:
    with Session(engine) as session:
        session.execute(
            update(Connection)
            .where(col(Connection.id) == connection_id, col(Connection.oauth_state_nonce).is_(None))
            .values(oauth_state_nonce=nonce, oauth_callback_blob=None)
        )
        session.commit()


def _fresh(engine: Engine, connection_id: uuid.UUID) -> Connection:
    with Session(engine, expire_on_commit=False) as session:
        return get_or_fail(session, Connection, connection_id)


def outcome_page(connection: Connection, outcome: CallbackOutcome) -> HTMLResponse:
    label = KIND_LABELS[ConnectionKind(connection.kind)]
    address = html.escape(connection.custom_address)
    if outcome.status in ("authorized", "tested", "test_failed"):
        return _page(
            "Mailbox connected",
            [
                f"Signed in to {label} as {html.escape(outcome.mailbox or address)}.",
                "Return to Recruitmail to check the test result and activate the connection.",
            ],
        )
    if outcome.status == "awaiting_admin_consent":
        paragraphs = [html.escape(outcome.error or "An administrator must approve Recruitmail.")]
        if connection.admin_consent_url:
            link = html.escape(connection.admin_consent_url, quote=True)
            paragraphs.append(
                "Forward this link to an administrator of your organisation; the setup waits "
                f'until they approve: <a href="{link}">{link}</a>'
            )
        if connection.admin_instructions:
            paragraphs.append(html.escape(connection.admin_instructions))
        return _page("An administrator must approve", paragraphs)
    if outcome.status == "awaiting_authorization":
        return _page(
            "Please sign in again",
            [html.escape(outcome.error or "The sign-in did not complete.")],
            400,
        )
    return _page(
        "The mailbox was not connected",
        [html.escape(outcome.error or "The sign-in failed.")],
        400,
    )
