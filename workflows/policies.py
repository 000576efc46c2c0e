"""Every timeout and retry policy of the workflows, each with the reason for its number."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

A = TypeVar("A")
R = TypeVar("R")

# Database steps run as local activities: a single-row read or write that takes milliseconds.
# Ten seconds leaves room for a busy SQLite writer lock (busy timeout 30 s is the outer bound).
DB_STEP_TIMEOUT = timedelta(seconds=10)
# A database that is briefly down should not fail a send: keep retrying for minutes, slowly.
DB_STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
    # A row that was deleted does not come back (core.db.RowMissing).
    non_retryable_error_types=["RowMissing"],
)
DB_STEP_SCHEDULE_TO_CLOSE = timedelta(minutes=30)

# One delivery attempt: connect, TLS, AUTH, DATA. SMTP servers may take a minute to accept
# DATA on large attachments; beyond two minutes the attempt is treated as lost and retried.
DELIVERY_ATTEMPT_TIMEOUT = timedelta(minutes=2)
# The attempt heartbeats every few seconds while the server works, so an attempt whose worker
# died (a crash, kill -9) is retried after this long, not after the two minutes above.
DELIVERY_HEARTBEAT_TIMEOUT = timedelta(seconds=20)

# Error types that no retry can fix (see core/errors.py). Listed by class name because
# the activity raises ApplicationError(type=<class name>).
PERMANENT_MAIL_ERRORS = [
    "PermanentMailError",  # 5xx, refused recipient or message
    "AuthExpiredError",  # credentials or grant refused: the connection needs attention
    "ConfigurationError",  # our configuration is wrong: an operator must fix it
    "AdminConsentRequiredError",  # an administrator must approve first
]


def delivery_retry(initial: timedelta, maximum: timedelta) -> RetryPolicy:
    """Exponential backoff between attempts; the total is bounded by schedule-to-close."""
    return RetryPolicy(
        initial_interval=initial,
        backoff_coefficient=2.0,
        maximum_interval=maximum,
        maximum_attempts=0,
        non_retryable_error_types=PERMANENT_MAIL_ERRORS,
    )


# A connection test walks DNS, TCP, TLS, EHLO, AUTH and MAIL FROM, each bounded by the SMTP
# timeout (30 s by default). The admin is waiting on the page, so one attempt, no retry:
# the result says what failed.
CONNECTION_TEST_TIMEOUT = timedelta(minutes=3)
NO_RETRY = RetryPolicy(maximum_attempts=1)

# Routing one inbound message: parse up to 25 MB of MIME and write a few rows. Seconds at
# most; two minutes leaves room for a slow database before the attempt is retried.
ROUTE_TIMEOUT = timedelta(minutes=2)

# One call to an identity provider or mail API (metadata discovery, token exchange, profile).
# Their own HTTP timeout is 30 s; a minute covers discovery plus the call.
OAUTH_CALL_TIMEOUT = timedelta(minutes=1)
# Issuing a sign-in link may meet a provider hiccup: retry for a few minutes, then give up
# with the reason, so the admin is not left waiting on a link that never comes.
OAUTH_CALL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=PERMANENT_MAIL_ERRORS,
)
OAUTH_CALL_SCHEDULE_TO_CLOSE = timedelta(minutes=5)

# Bulk sends. Planning reads and updates up to 5,000 rows: seconds on either database.
BULK_PLAN_TIMEOUT = timedelta(minutes=2)
# One batch: at most `bulk_batch_size` messages over one connection, with throttle waits of
# up to a minute each before it hands a longer wait back to the workflow's durable timer.
BULK_BATCH_TIMEOUT = timedelta(minutes=30)
# Transient trouble (the relay down, 4xx, a dropped connection that does not come back)
# retries the batch, which skips what was sent, for up to two hours before its remaining
# messages fail with the last reason.
BULK_BATCH_SCHEDULE_TO_CLOSE = timedelta(hours=2)
BULK_BATCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=PERMANENT_MAIL_ERRORS,
)


# Webhooks. One round queues an endpoint's new events and attempts what is due, each request
# bounded by its 10 s answer time; 50 per round keeps a round within minutes even when slow.
WEBHOOK_ROUND_TIMEOUT = timedelta(minutes=10)
# A round heartbeats every few seconds while it delivers: a worker lost mid-round is noticed
# after this, and the round runs again on another.
WEBHOOK_HEARTBEAT_TIMEOUT = timedelta(seconds=20)
# A run continues as new after this many rounds, keeping its history short.
WEBHOOK_ROUNDS_PER_RUN = 500
# The longest an endpoint's run waits without a signal: a lost signal delays by this at most.
WEBHOOK_IDLE_WAIT = timedelta(minutes=5)
# A round refused because the company's share of the worker's rounds is in use (its other
# endpoints are slow) is asked for again after this, up to twice as long (spread out).
WEBHOOK_BUSY_WAIT = timedelta(seconds=1)

# Reply notifications go through the platform transport: retried while it says "try later",
# for up to a day (a recruiter still wants to know), then given up.
NOTIFY_RETRY_INITIAL = timedelta(seconds=5)
NOTIFY_RETRY_MAX = timedelta(minutes=10)
NOTIFY_SCHEDULE_TO_CLOSE = timedelta(days=1)


# Erasure. A batch erases 500 messages' content in one transaction: seconds; ten minutes
# leaves room for a large attachment table on a slow disk.
ERASE_BATCH_TIMEOUT = timedelta(minutes=10)
# While a delivery attempt to the candidate is under way (two minutes at most), the erasure
# looks again this often.
ERASE_IN_FLIGHT_POLL = timedelta(seconds=2)
# An erasure step that failed for DB_STEP_SCHEDULE_TO_CLOSE is tried again after this.
ERASE_STEP_PAUSE = timedelta(minutes=5)
# The retention sweep continues as new after this many batches of candidates (200 each).
SWEEP_BATCHES_PER_RUN = 20


async def db_step(
    activity: Callable[[Any, A], R],
    arg: A,
    *,
    timeout: timedelta = DB_STEP_TIMEOUT,
) -> R:
    """Run a database step (a sync method of an activity contract) as a local activity, with
    the database steps' timeout and retry; mypy checks `arg` and the result against it.

    Bounded by DB_STEP_SCHEDULE_TO_CLOSE: a database that stays down longer fails the step,
    and the caller records the outcome.
    """
    return await workflow.execute_local_activity_method(
        activity,
        arg,
        start_to_close_timeout=timeout,
        schedule_to_close_timeout=DB_STEP_SCHEDULE_TO_CLOSE,
        retry_policy=DB_STEP_RETRY,
    )
