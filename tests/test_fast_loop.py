"""The quick loop's own kinds of test (`make test-fast`): an activity through temporalio's
ActivityEnvironment on the suite's database, and a workflow against mocked activities on the
shared dev server, each in about a second. The whole-stack tests cover the same code end to
end; these say which layer broke."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.deliverability import DeliverabilityActivities
from contracts.deliverability import (
    CHECK_DELIVERABILITY,
    FIND_CONNECTIONS_TO_CHECK,
    DeliverabilityBatch,
    DeliverabilityOutcome,
    DeliverabilityPage,
    DeliverabilityTarget,
)
from core.models import Connection
from tests.fakes.dns import DnsServer
from tests.helpers import new_company
from tests.helpers import test_settings as settings_for
from workflows.deliverability import DeliverabilityCheckWorkflow


def test_the_deliverability_activity_keeps_its_report(engine, tmp_path):
    company = new_company(engine)
    with Session(engine, expire_on_commit=False) as session:
        row = Connection(
            company_id=company, kind="google", custom_address="jobs@fast.example", status="active"
        )
        session.add(row)
        session.commit()
    with DnsServer() as dns:
        dns.txt("fast.example", "v=spf1 include:_spf.google.com ~all")
        settings = settings_for(tmp_path, dns_nameservers=dns.nameservers)
        activities = DeliverabilityActivities(engine, settings)
        env = ActivityEnvironment()
        first = env.run(activities.check_deliverability, DeliverabilityTarget(str(row.id)))
        again = env.run(activities.check_deliverability, DeliverabilityTarget(str(row.id)))
        gone = env.run(activities.check_deliverability, DeliverabilityTarget(str(uuid.uuid4())))
    with Session(engine) as session:
        kept = session.get(Connection, row.id).deliverability
    assert (first.status, first.changed) == ("warn", True)  # no DKIM seen, no DMARC record
    assert (again.status, again.changed) == ("warn", False)
    assert gone.status == ""
    assert [c["name"] for c in kept["checks"]] == ["spf", "dkim", "dmarc"]


@pytest.mark.fast
async def test_the_daily_run_checks_every_page_and_outlives_a_failing_check(temporal_client):
    pages: list[str] = []
    checked: list[str] = []

    @activity.defn(name=FIND_CONNECTIONS_TO_CHECK)
    def find(page: DeliverabilityPage) -> DeliverabilityBatch:
        pages.append(page.after)
        ids = [f"{int(page.after or 0) + i}" for i in (1, 2)]
        return DeliverabilityBatch(ids, more=ids[-1] != "6", after=ids[-1])

    @activity.defn(name=CHECK_DELIVERABILITY)
    def check(target: DeliverabilityTarget) -> DeliverabilityOutcome:
        checked.append(target.connection_id)
        if target.connection_id == "3":  # a check that fails: left for tomorrow's run
            raise ApplicationError("the DNS is down", non_retryable=True)
        return DeliverabilityOutcome("pass")

    queue = f"fast-{uuid.uuid4()}"
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[DeliverabilityCheckWorkflow],
        activities=[find, check],
        activity_executor=ThreadPoolExecutor(4),
    ):
        await temporal_client.execute_workflow(
            DeliverabilityCheckWorkflow.run,
            DeliverabilityPage(limit=2),
            id=f"deliverability-check-{uuid.uuid4()}",
            task_queue=queue,
        )
    assert pages == ["", "2", "4"]
    assert sorted(set(checked)) == ["1", "2", "3", "4", "5", "6"]
    assert checked.count("3") == 1  # it failed; the run went on with the others
