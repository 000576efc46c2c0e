"""Replay: every workflow, as the code stands now, replays histories that the suite recorded.

A change to a workflow that is not deterministic (a new activity call in the middle, a
reordered wait) makes replay fail here, in CI, before it fails a running workflow.

Two sets of histories:
- those checked in under tests/histories/, recorded by an earlier version of the code
  (`make record-histories` refreshes them when a change is meant to break replay, together
  with a versioning plan for the runs in flight);
- those this test session produced, replayed by the last test of the run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from core.temporal import data_converter
from tests.helpers import test_settings as settings_for
from worker.main import WORKFLOWS

HISTORIES = Path(__file__).parent / "histories"
TYPES = sorted(cls.__temporal_workflow_definition.name for cls in WORKFLOWS)


def _replayer(tmp_path: Path) -> Replayer:
    # The suite's key ring (tests/helpers.TEST_KEY) decrypts the recorded payloads.
    return Replayer(workflows=WORKFLOWS, data_converter=data_converter(settings_for(tmp_path)))


async def _each(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in histories:
        yield history


def _workflow_type(history: WorkflowHistory) -> str:
    started = history.events[0].workflow_execution_started_event_attributes
    return started.workflow_type.name


def _recorded() -> list[WorkflowHistory]:
    return [
        WorkflowHistory.from_json(path.stem, path.read_text())
        for path in sorted(HISTORIES.glob("*.json"))
    ]


async def test_recorded_histories_replay(tmp_path):
    histories = _recorded()
    assert sorted({_workflow_type(h) for h in histories}) == TYPES, "a workflow has no history"
    results = await _replayer(tmp_path).replay_workflows(
        _each(histories), raise_on_replay_failure=False
    )
    failures = {run_id: str(failure) for run_id, failure in results.replay_failures.items()}
    assert failures == {}


async def _closed_histories(client: Client, per_type: int) -> list[WorkflowHistory]:
    histories = []
    for name in TYPES:
        query = f"WorkflowType = '{name}' AND ExecutionStatus != 'Running'"
        async for execution in client.list_workflows(query, limit=per_type):
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            histories.append(await handle.fetch_history())
    return histories


@pytest.mark.last
@pytest.mark.skipif(
    "PYTEST_XDIST_WORKER" in os.environ,
    reason="parallel workers: the controller replays the session once all are done "
    "(conftest.py, pytest_sessionfinish)",
)
async def test_this_sessions_histories_replay(temporal_client, tmp_path):
    """Runs last (see conftest.py): replays what the suite's workflows did in this session."""
    histories = await _closed_histories(temporal_client, per_type=20)
    seen = {_workflow_type(h) for h in histories}
    assert seen == set(TYPES), f"run the whole suite: no closed runs of {set(TYPES) - seen}"
    await _replayer(tmp_path).replay_workflows(_each(histories))  # raises on a failure
    if os.environ.get("RECRUITMAIL_RECORD_HISTORIES"):
        _record(histories)


async def replay_session(address: str) -> tuple[str | None, str]:
    """The same check, from the controller of a parallel run: (what failed or None, what was
    replayed). A run of a few tests leaves some workflows without closed runs: only a whole
    run (RECRUITMAIL_WHOLE_SUITE, set by `make test`) asks for all."""
    with tempfile.TemporaryDirectory() as tmp:
        converter = data_converter(settings_for(Path(tmp)))
        client = await Client.connect(address, data_converter=converter)
        histories = await _closed_histories(client, per_type=20)
        seen = {_workflow_type(h) for h in histories}
        done = f"replayed {len(histories)} closed runs of {len(seen)} of {len(TYPES)} workflows"
        if not histories:
            return None, done
        results = await _replayer(Path(tmp)).replay_workflows(
            _each(histories), raise_on_replay_failure=False
        )
        if results.replay_failures:
            failed = list(results.replay_failures.items())[:5]
            return "; ".join(f"{k}: {v}" for k, v in failed), done
        if os.environ.get("RECRUITMAIL_WHOLE_SUITE") and seen != set(TYPES):
            return f"no closed runs of {sorted(set(TYPES) - seen)}", done
        if os.environ.get("RECRUITMAIL_RECORD_HISTORIES"):
            _record(histories)
    return None, done


def _record(histories: list[WorkflowHistory], limit: int = 64_000) -> None:
    """Keep, per workflow type, the longest closed history under `limit` bytes of JSON: the
    one that walks the most of the workflow (an OAuth setup through consent to activation)."""
    longest: dict[str, WorkflowHistory] = {}
    for history in histories:
        name = _workflow_type(history)
        if len(history.to_json()) > limit:
            continue
        if name not in longest or len(history.events) > len(longest[name].events):
            longest[name] = history
    HISTORIES.mkdir(exist_ok=True)
    # Rewrites `{type}.json`; other files (another path of a workflow) stay until removed.
    for name, history in longest.items():
        (HISTORIES / f"{name}.json").write_text(history.to_json())
