"""A bounded schemathesis pass over every operation of the API, as a client generated from the
OpenAPI document would call it: no answer is a 5xx, and every answer conforms to the document.

The API runs as its own process (`recruitmail api`) on a fresh database, against the session's
Temporal dev server, with a company admin's token (operations that need other rights answer
their declared 403).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fakes.net import free_port
from tests.helpers import TEST_KEY

EXAMPLES = 12  # per operation: ~70 operations, so about 900 calls


@pytest.fixture(scope="module")
def api(tmp_path_factory, temporal_env) -> Iterator[tuple[str, str]]:
    state = tmp_path_factory.mktemp("schemathesis")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECRUITMAIL_")}
    env.update(
        RECRUITMAIL_STATE_DIR=str(state),
        RECRUITMAIL_SECRET_KEYS=TEST_KEY,
        RECRUITMAIL_API_PORT=str(port),
        RECRUITMAIL_TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        RECRUITMAIL_TASK_QUEUE="schemathesis",  # no worker: runs start and wait
        RECRUITMAIL_LOG_FORMAT="text",
    )
    cli = [sys.executable, "-m", "worker.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    created = subprocess.run(
        [*cli, "company", "create", "Fuzz", "--slug", "fuzz", "--admin-email", "a@fuzz.example"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    token = json.loads(created.stdout)["admin_token"]
    log = (state / "api.log").open("wb")
    proc = subprocess.Popen([*cli, "api"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "the API did not start"
        time.sleep(0.3)
    yield base, token
    proc.terminate()
    proc.wait(30)
    server_errors = [
        line for line in Path(state / "api.log").read_text().splitlines() if "Traceback" in line
    ]
    assert server_errors == [], "the API logged a traceback"


def test_every_operation_answers_as_documented(api):
    base, token = api
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    failures: dict[str, str] = {}
    calls: list[str] = []
    for operation in operations:
        run = _fuzz(operation, base, token, checks, calls)
        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures[operation.label] = str(exc)[:2000]
    assert failures == {}, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
    # Every operation was called, most of them many times.
    assert set(calls) == {operation.label for operation in operations}
    assert len(calls) >= 10 * len(operations), len(calls)


def _fuzz(operation, base: str, token: str, checks: list, calls: list[str]):
    """A Hypothesis test of one operation: generated input, every answer checked."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(case=operation.as_strategy())
    def run(case) -> None:
        calls.append(operation.label)
        case.call_and_validate(
            base_url=base,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            checks=checks,
            excluded_checks=[negative_data_rejection],
        )

    return run
