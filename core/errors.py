"""One error tree for every mail provider. Each message is written for the person who must act."""

from __future__ import annotations

from datetime import timedelta


class MailError(Exception):
    """Root of provider errors. `str(error)` is shown to recruiters and admins."""


class TransientMailError(MailError):
    """Worth retrying: 4xx answers, timeouts, dropped connections, throttling."""

    def __init__(self, message: str, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# How long a mailbox whose sending quota is spent waits before trying again.
QUOTA_RETRY = timedelta(hours=1)


class QuotaExceeded(TransientMailError):
    """The sending mailbox's quota or rate is spent (Gmail's 550 5.4.5, Exchange's submission
    quota): a deferral for the whole mailbox, never a failure of the message or a reason to
    suppress its recipient."""

    def __init__(self, message: str, retry_after: timedelta | None = None) -> None:
        super().__init__(message, retry_after or QUOTA_RETRY)


class RecipientDeferred(TransientMailError):
    """The receiving server asked to try this one message (its recipient) later: greylisting,
    a full mailbox. The session and every other message are fine."""


class PermanentMailError(MailError):
    """Retrying cannot help: 5xx answers, invalid recipients, a refused message."""


class RecipientRefused(PermanentMailError):
    """The receiving server refused this recipient for good (a 5xx to RCPT)."""


def for_recruiter(err: MailError) -> str:
    """Why a send to a candidate failed, as the recruiter reads it: a refused recipient is
    most often a mistyped address (a connection test's refusal involves no candidate, and
    says only what the server said)."""
    if isinstance(err, RecipientRefused):
        return f"{err} Check the candidate's email address."
    return str(err)


class AuthExpiredError(PermanentMailError):
    """The provider refused our credentials or grant; the connection needs attention."""


class AdminConsentRequiredError(MailError):
    """An administrator must approve the app before this account can use it."""


class ConfigurationError(PermanentMailError):
    """Our side is misconfigured (relay URL, certificates, API keys); an operator must fix it."""


# -- requests the domain refuses ----------------------------------------------------------
# Raised by the domain and the API's services, which never know HTTP; api/errors.py maps each
# kind to its status once. `detail` is the answer's words, `extra` any fields beside it.


class Refused(Exception):
    """A request that cannot be done as asked (422): the words say which field and why."""

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.detail, self.extra = detail, extra


class NotFound(Refused):
    """Nothing of that id belongs to the caller's company (404)."""


class Conflict(Refused):
    """The request contradicts the thing's state (409): sent already, ended, held elsewhere."""


class TooLarge(Refused):
    """A body or a file over its stated limit (413)."""


class StillRunning(Refused):
    """A process did not answer within the request's wait (504); it goes on, and the words say
    where to follow it."""
