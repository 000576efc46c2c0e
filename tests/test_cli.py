"""Every command of the README's command table, run as a person runs it: a subprocess of the
installed `recruitmail` command, on a fresh database."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from tests.fakes.net import free_port
from tests.helpers import TEST_KEY, eventually

# Each test runs the product's own processes (the CLI, the API, the worker) as subprocesses:
# whole-stack tests, left out of `make test-fast` like those that start the stack in-process.
pytestmark = pytest.mark.stack

COMMAND = shutil.which("recruitmail", path=str(Path(sys.executable).parent)) or "recruitmail"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh state folder and SQLite database, and no settings leaking in from outside."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECRUITMAIL_")}
    clean.update(
        RECRUITMAIL_ENVIRONMENT="development",
        RECRUITMAIL_STATE_DIR=str(tmp_path / "state"),
        RECRUITMAIL_DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}",
        RECRUITMAIL_SECRET_KEYS=TEST_KEY,
        RECRUITMAIL_LOG_FORMAT="text",
    )
    return clean


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def upgraded(env: dict[str, str]) -> dict[str, str]:
    done = run(env, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert "database is up to date" in done.stdout
    return env


def test_db_upgrade_twice_is_fine(env):
    upgraded(env)
    upgraded(env)


def test_company_create_prints_the_admin_token(env):
    upgraded(env)
    done = run(env, "company", "create", "Acme Corp", "--slug", "acme", "--admin-email", "a@x.io")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    created = json.loads(done.stdout)
    assert created["slug"] == "acme"
    assert created["hosted_address"].startswith("acme-jobs@")
    assert created["admin_token"].startswith("rm_")

    again = run(env, "company", "create", "Other", "--slug", "acme", "--admin-email", "b@x.io")
    assert again.returncode == 2
    assert "error:" in again.stderr and "Traceback" not in again.stderr


def test_operator_create_prints_the_token(env):
    upgraded(env)
    done = run(env, "operator", "create", "ops@platform.example", "--name", "Ops")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["operator_token"].startswith("rm_")


def test_keys_rotate_reports_what_it_did(env):
    upgraded(env)
    done = run(env, "keys", "rotate")
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 0 secrets under key 'test1'" in done.stdout


class Process:
    """A long-running command, stopped with SIGTERM as a process manager would."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [COMMAND, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            output, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            output, _ = self.proc.communicate()
            pytest.fail(f"did not stop within 30 s on SIGTERM:\n{output}")
        return output


async def wait_for(check, what: str, proc: Process, timeout: float = 60.0):
    """Poll a blocking `check` until it answers, failing early if the process exits."""

    async def probe():
        if proc.proc.poll() is not None:
            return None
        try:
            return await asyncio.to_thread(check)
        except (OSError, httpx.HTTPError):
            return None

    result = await eventually(
        probe, lambda r: r or proc.proc.poll() is not None, timeout=timeout, fail=False
    )
    if not result:
        pytest.fail(f"{what} did not happen:\n{proc.stop()}")
    return result


async def test_api_serves_the_created_company(env):
    upgraded(env)
    created = json.loads(
        run(env, "company", "create", "Acme", "--slug", "acme", "--admin-email", "a@x.io").stdout
    )
    port = free_port()
    api = Process({**env, "RECRUITMAIL_API_PORT": str(port)}, "api")
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200, "healthz", api)
        answer = httpx.get(
            f"{base}/v1/mail-settings",
            headers={"Authorization": f"Bearer {created['admin_token']}"},
        )
    finally:
        api.stop()
    assert answer.status_code == 200, answer.text
    assert answer.json()["hosted_address"] == created["hosted_address"]


async def test_worker_polls_and_stops(env, temporal_env):
    upgraded(env)
    client = temporal_env.client
    worker = Process(
        {
            **env,
            "RECRUITMAIL_TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "RECRUITMAIL_TASK_QUEUE": "cli-test",
        },
        "worker",
    )
    try:
        polled = await eventually(
            lambda: _queue_has_poller(client, "cli-test"),
            lambda found: found or worker.proc.poll() is not None,
            timeout=60,
            interval=0.3,
            fail=False,
        )
    finally:
        output = worker.stop()
    assert polled, output
    assert "Traceback" not in output


async def test_worker_processes_are_restarted_and_stop_together(env, temporal_env):
    upgraded(env)
    client = temporal_env.client
    parent = Process(
        {
            **env,
            "RECRUITMAIL_TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "RECRUITMAIL_TASK_QUEUE": "cli-processes",
            "RECRUITMAIL_SHUTDOWN_GRACE_SECONDS": "5",
        },
        "worker",
        "--processes",
        "2",
    )
    try:
        first = await eventually(
            lambda: _poller_pids(client, "cli-processes"),
            lambda pids: len(pids) >= 2 or parent.proc.poll() is not None,
            timeout=90,
            interval=0.3,
        )
        assert parent.proc.poll() is None and len(first) == 2
        assert all(_parent_of(pid) == parent.proc.pid for pid in first)
        crashed = min(first)
        os.kill(crashed, signal.SIGKILL)  # a child crashes: the parent starts another
        after = await eventually(
            lambda: _poller_pids(client, "cli-processes"),
            lambda pids: len(pids - first) >= 1,
            timeout=90,
            interval=0.3,
        )
        [replacement] = after - first
        assert _parent_of(replacement) == parent.proc.pid
    finally:
        output = parent.stop()
    assert "exited (code -9); restarting" in output
    # Every child stopped with the parent.
    assert all(not Path(f"/proc/{pid}").exists() for pid in (first | after) - {crashed})
    assert "Traceback" not in output


async def _poller_pids(client: Client, queue: str) -> set[int]:
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    # The SDK's default identity is "{pid}@{host}"; a poller seen within the last minute is
    # listed, so a killed child's stays a while: only live processes count.
    pids = {int(p.identity.split("@")[0]) for p in answer.pollers if p.identity[:1].isdigit()}
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()}


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


async def _queue_has_poller(client: Client, queue: str) -> bool:
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return len(answer.pollers) > 0


async def test_inbound_smtp_greets_and_stops(env, temporal_env):
    upgraded(env)
    port = free_port()
    receiver = Process(
        {
            **env,
            "RECRUITMAIL_INBOUND_SMTP_PORT": str(port),
            "RECRUITMAIL_TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        },
        "inbound-smtp",
    )
    try:
        code = await wait_for(lambda: _ehlo(port), "the SMTP greeting", receiver)
    finally:
        output = receiver.stop()
    assert code == 250
    assert "Traceback" not in output


def _ehlo(port: int) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        code, _ = smtp.ehlo()
        return code
