"""What the activity classes share: the one mapping of mail errors to Temporal's retry
decisions, the platform's own mail, and heartbeating while a provider works. Activity modules
import this and activities/accounts.py, never each other."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.accounts import Accounts
from contracts.send import SUPPRESSED
from core import events
from core.errors import MailError, QuotaExceeded, TransientMailError
from core.send.compose import Suppressed
from providers.base import Outgoing


def to_application_error(err: MailError) -> ApplicationError:
    """Transient errors retry (honouring Retry-After); every other MailError stops at once.

    The message enters workflow history, so addresses in it are masked (a refusal like `550
    5.1.1 <grace@…>` names one); the message row keeps the whole text for the recruiter."""
    text = events.scrub(str(err)) or ""
    if isinstance(err, TransientMailError):
        # A spent quota says so (the send workflow does not count its wait as a retry).
        kind = "QuotaExceeded" if isinstance(err, QuotaExceeded) else "TransientMailError"
        return ApplicationError(text, type=kind, next_retry_delay=err.retry_after)
    return ApplicationError(text, type=type(err).__name__, non_retryable=True)


# What composing a message may refuse: a recipient on the suppression list, or text that
# cannot go into an email (older rows, imports). Neither is retried.
UNSENDABLE = (Suppressed, ValueError, UnicodeError)


def unsendable(exc: Exception) -> ApplicationError:
    """A message that cannot be composed, as a failure no retry repeats."""
    if isinstance(exc, Suppressed):
        return ApplicationError(str(exc), type=SUPPRESSED, non_retryable=True)
    return ApplicationError(
        f"its text cannot go into an email ({exc}).", type="CompositionError", non_retryable=True
    )


async def send_platform_mail(accounts: Accounts, mails: list[Outgoing]) -> int:
    """Mail from the platform itself (notices to a company's people, a candidate's consent
    question), each through the platform transport; a failure becomes the activity's error."""
    provider, account = accounts.platform()
    for mail in mails:
        try:
            await provider.send(account, mail)
        except MailError as err:
            raise to_application_error(err) from None
    return len(mails)


T = TypeVar("T")
HEARTBEAT_EVERY = 5.0  # well within the workflow's delivery heartbeat timeout


async def heartbeating(work: Awaitable[T]) -> T:
    """Await `work`, heartbeating meanwhile: Temporal then knows the worker is alive."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY)
        if done:
            return task.result()
        if not activity.info().is_local:  # a local attempt lives in the workflow's task
            activity.heartbeat()
