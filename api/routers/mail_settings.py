"""Mail settings: the company's senders per scope (the company and each legal entity), the
sender's name, the undo window and the default signature (api/services/mail_settings.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import SessionDep, SettingsAdmin, SettingsDep
from api.schemas import (
    DeliverabilityPublic,
    MailSettingsPublic,
    MailSettingsUpdate,
    UsePlatformRequest,
)
from api.services import mail_settings as service
from core.deliverability import checks as deliverability

router = APIRouter(prefix="/v1/mail-settings", tags=["mail settings"])


@router.get("", response_model=MailSettingsPublic)
def read_mail_settings(
    user: SettingsAdmin, session: SessionDep, settings: SettingsDep
) -> MailSettingsPublic:
    return service.view(session, settings, user)


@router.get("/deliverability", response_model=DeliverabilityPublic)
async def hosted_deliverability(user: SettingsAdmin, settings: SettingsDep) -> dict[str, Any]:
    """SPF, DKIM and DMARC for the platform domain the hosted address sends from."""
    report = await run_in_threadpool(deliverability.for_hosted, settings)
    return report.as_dict()


@router.patch("", response_model=MailSettingsPublic)
def update_mail_settings(
    body: MailSettingsUpdate, user: SettingsAdmin, session: SessionDep, settings: SettingsDep
) -> MailSettingsPublic:
    """Each field given changes: the sender's name (`company` or `employee`), the template
    language when a candidate's has no variant, the undo window (0, or 5 to 30 seconds) and
    the company's default signature (its HTML made safe)."""
    return service.update(session, settings, user, body)


@router.post("/use-platform", response_model=MailSettingsPublic)
def use_platform(
    body: UsePlatformRequest, user: SettingsAdmin, session: SessionDep, settings: SettingsDep
) -> MailSettingsPublic:
    """Switch a scope back to the platform service (or, for an entity, to the company's sender):
    its live connection is disabled. Doing it twice is harmless."""
    return service.use_platform(session, settings, user, body)
