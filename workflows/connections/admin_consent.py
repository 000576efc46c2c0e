"""ConsentRequestMail: email what an administrator needs to approve Recruitmail (Microsoft's
admin-consent link, or Google Workspace's steps) to an address the person connecting typed.

The run carries ids and the typed address only; the activity loads the link and composes the
mail, so neither the link's state nor the text enters history. It goes out through the
platform transport, retried while the transport says "try later", and ends `sent` or `failed`
with the reason.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from contracts.connections.admin_consent import (
    AdminConsentContract,
    AdminConsentMailInput,
    AdminConsentMailResult,
)
from workflows import policies


@workflow.defn(name="consent-request-mail")
class AdminConsentMailWorkflow:
    @workflow.run
    async def run(self, input: AdminConsentMailInput) -> AdminConsentMailResult:
        try:
            await workflow.execute_activity_method(
                AdminConsentContract.send_admin_consent_mail,
                input,
                start_to_close_timeout=policies.DELIVERY_ATTEMPT_TIMEOUT,
                # The admin waits on the page for a few seconds; after an hour of "try later"
                # the request is stale: the page says so and the link can still be copied.
                schedule_to_close_timeout=timedelta(hours=1),
                retry_policy=policies.delivery_retry(timedelta(seconds=2), timedelta(minutes=5)),
            )
        except ActivityError as err:
            cause = err.cause
            reason = (
                cause.message
                if isinstance(cause, ApplicationError)
                else "The platform's mail transport did not accept it within an hour."
            )
            return AdminConsentMailResult(sent=False, error=reason)
        return AdminConsentMailResult(sent=True)
