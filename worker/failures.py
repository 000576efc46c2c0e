"""What an activity's failure may carry into workflow history: no personal data.

Activities raise ApplicationErrors whose messages they wrote (a mail refusal's addresses masked
by `to_application_error`). Anything else that escapes an activity (a database error quoting
its parameters, a library's exception quoting a header) would enter history with its message,
its stack and its causes. This interceptor turns such an exception into an ApplicationError of
the same type name, with the addresses masked, the message cut, and no cause chain; the whole
exception is logged by the worker (whose log filter masks addresses too). The failure converter
then encodes the message and stack (core/temporal.py), so the Temporal UI shows them only
through the codec."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from core.events import scrub

log = logging.getLogger(__name__)
# A failure message names the problem; what follows the first line is a library's detail.
MAX_MESSAGE = 300


def safe_message(exc: BaseException) -> str:
    if isinstance(exc, SQLAlchemyError):
        # Its text quotes the statement's parameters: the driver's own first line only.
        inner = getattr(exc, "orig", None) or exc
        text = str(inner).splitlines()[0] if str(inner) else type(inner).__name__
        text = text.split("[parameters:")[0].split("DETAIL:")[0].strip()
    else:
        text = (str(exc).splitlines() or [""])[0]
    return (scrub(text) or "")[:MAX_MESSAGE] or type(exc).__name__


class _Activities(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await self.next.execute_activity(input)
        except (ApplicationError, CancelledError):
            raise
        except Exception as exc:
            log.warning("activity %s failed", activity.info().activity_type, exc_info=True)
            raise ApplicationError(safe_message(exc), type=type(exc).__name__) from None


class FailureScrubber(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Activities(next)
