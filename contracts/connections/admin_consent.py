"""consent-request-mail: email an administrator what they need to approve Recruitmail."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

SEND_ADMIN_CONSENT_MAIL = "send-consent-request"


@dataclass
class AdminConsentMailInput:
    connection_id: str
    company_id: str
    # The audit line that holds the administrator's address (no personal data in history).
    request_id: str


@dataclass
class AdminConsentMailResult:
    sent: bool
    error: str | None = None


class AdminConsentContract:
    """The activity of consent-request-mail (activities/connections/oauth.py)."""

    @activity.defn(name=SEND_ADMIN_CONSENT_MAIL)
    async def send_admin_consent_mail(self, input: AdminConsentMailInput) -> None:
        raise NotImplementedError
