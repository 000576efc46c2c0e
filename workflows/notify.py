"""ReplyNotifications: `reply-notifications-{company}-{candidate or "unassigned"}`, started (or
signalled) for each reply that reaches a candidate's Messages tab or Unassigned messages."""

from __future__ import annotations

from dataclasses import replace

from temporalio import workflow

from contracts.notify import REPLY, NotificationBatch, NotifyContract, ReplyNotificationsInput
from workflows import policies

# Ids kept across a continue-as-new (the relay delivers at least once).
SEEN_KEPT = 500


def _long(info: workflow.Info, limit: int) -> bool:
    return info.is_continue_as_new_suggested() or info.get_current_history_length() > limit


@workflow.defn(name="reply-notifications")
class ReplyNotificationsWorkflow:
    """Emails about the first reply at once, then waits out the coalescing window; replies
    that arrived meanwhile go out in one email at its end, and the window starts again. Ends
    after a window with nothing new: at most one email per candidate per window. Message ids
    only: the activity reads who wrote what from the database."""

    @workflow.init
    def __init__(self, input: ReplyNotificationsInput) -> None:
        self._pending: list[str] = list(input.pending)
        self._seen: set[str] = set(input.seen) | set(input.pending)
        self._order: list[str] = [*input.seen, *input.pending]

    @workflow.signal(name=REPLY)
    def reply(self, message_id: str) -> None:
        if message_id not in self._seen:  # the relay delivers at least once
            self._seen.add(message_id)
            self._order.append(message_id)
            self._pending.append(message_id)

    @workflow.run
    async def run(self, input: ReplyNotificationsInput) -> None:
        await workflow.wait_condition(lambda: bool(self._pending))
        while self._pending:
            batch, self._pending = self._pending, []
            await workflow.execute_activity_method(
                NotifyContract.send_reply_notification,
                NotificationBatch(input.company_id, input.candidate_id, batch),
                start_to_close_timeout=policies.DELIVERY_ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=policies.NOTIFY_SCHEDULE_TO_CLOSE,
                retry_policy=policies.delivery_retry(
                    policies.NOTIFY_RETRY_INITIAL, policies.NOTIFY_RETRY_MAX
                ),
            )
            await workflow.sleep(input.coalesce)  # nothing more goes out within the window
            if self._pending and _long(workflow.info(), input.history_limit):
                # A candidate (or Unassigned) that never falls quiet: a fresh run before the
                # history (and its signals, 10,000 at most per run) grows too long.
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    replace(input, pending=self._pending, seen=self._order[-SEEN_KEPT:])
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
