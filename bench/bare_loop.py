"""The second baseline: one workflow that runs one no-op activity, on the same server."""

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bare-noop")
async def bare_noop(n: int) -> int:
    return n


@workflow.defn(name="bare-loop")
class BareLoop:
    @workflow.run
    async def run(self, n: int) -> int:
        return await workflow.execute_activity(
            "bare-noop", n, start_to_close_timeout=timedelta(seconds=30), result_type=int
        )
