"""consent-request-mail: email an administrator what they need to approve Recruitmail."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

SEND_CONSENT_REQUEST = "send-consent-request"


@dataclass
class ConsentRequestInput:
    connection_id: str
    company_id: str
    # Runs started before request_id existed carry the address itself; new ones leave it
    # empty and name the audit line that holds it (no personal data in history).
    recipient: str = ""
    request_id: str = ""


@dataclass
class ConsentRequestResult:
    sent: bool
    error: str | None = None


class ConsentContract:
    """The activity of consent-request-mail (activities/oauth.py)."""

    @activity.defn(name=SEND_CONSENT_REQUEST)
    async def send_consent_request(self, input: ConsentRequestInput) -> None:
        raise NotImplementedError
