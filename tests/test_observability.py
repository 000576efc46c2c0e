"""Metrics and traces an operator already knows how to use: the worker's Temporal SDK metrics
and the API's `/metrics` in Prometheus format, and one trace from an API request through its
workflow and activities."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from api.app import create_app
from core.temporal import connect
from tests.fakes.net import free_port
from tests.fakes.smtp import SmtpSink
from tests.helpers import Stack, eventually
from tests.helpers import test_settings as settings_for
from worker.main import build_worker

ROOT = Path(__file__).resolve().parent.parent
_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{.*\})?\s+([-+0-9.eEinfNa]+)$")


def samples(text: str) -> dict[str, float]:
    """`name{labels}` → value, for every sample line of a Prometheus exposition."""
    found = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            found[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return found


def total(found: dict[str, float], name: str, **labels: str) -> float:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        value
        for key, value in found.items()
        if key.split("{")[0] == name and all(w in key for w in wanted)
    )


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """This test process's tracer provider: spans kept in memory (the product exports over
    OTLP only when an endpoint is set)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


async def test_metrics_move_after_a_send_and_a_receive_and_one_trace_spans_them(
    temporal_env, engine, tmp_path, spans
):
    metrics_port = free_port()
    with SmtpSink() as sink:
        settings = settings_for(
            tmp_path,
            task_queue=f"obs-{uuid.uuid4().hex[:8]}",
            temporal_address=temporal_env.client.service_client.config.target_host,
            platform_transport="smtp",
            smtp_relay_url=f"smtp://127.0.0.1:{sink.port}",
            inbound_secret="obs-secret-obs-secret",
        )
        runtime = Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(bind_address=f"127.0.0.1:{metrics_port}")
            )
        )
        client = await connect(settings, runtime=runtime)  # the product's own connect
        app = create_app(settings, engine=engine, temporal_client=client)
        transport = httpx.ASGITransport(app=app)
        async with (
            build_worker(client, settings, engine),
            httpx.AsyncClient(transport=transport, base_url="http://api") as http,
        ):
            stack = Stack(settings, engine, client, http)
            tenant = stack.tenant()
            before = samples((await http.get("/metrics")).text)
            spans.clear()
            sent = await stack.send_and_settle(tenant)
            hosted = settings.hosted_address(tenant.company.slug)
            received = await http.post(
                "/inbound/raw",
                content=(
                    f"From: Grace <grace@example.org>\r\nTo: {hosted}\r\nSubject: Hi\r\n"
                    f"Message-ID: <{uuid.uuid4().hex}@example.org>\r\n\r\nHello\r\n"
                ).encode(),
                headers={
                    "Content-Type": "message/rfc822",
                    "Authorization": "Bearer obs-secret-obs-secret",
                },
            )

            async def routed() -> dict[str, float]:
                return samples((await http.get("/metrics")).text)

            after = await eventually(
                routed,
                lambda s: (
                    total(s, "recruitmail_inbound_messages_total")
                    > total(before, "recruitmail_inbound_messages_total")
                ),
                what="the inbound message counted",
            )
            worker = samples(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text)

    assert sent["status"] == "sent" and received.status_code == 202
    # The API's own figures moved. They count the whole database, which earlier tests of this
    # process share: a late bounce of theirs moves one of their messages from `sent` to
    # `bounced` (both ended), so the ended total is what this send must have raised.
    assert total(after, "recruitmail_messages_total", provider="platform") >= (
        total(before, "recruitmail_messages_total", provider="platform") + 1
    )
    assert total(after, "recruitmail_messages_total", status="sent", provider="platform") >= 1
    assert total(after, "recruitmail_delivery_attempts_total") > total(
        before, "recruitmail_delivery_attempts_total"
    )
    assert total(after, "recruitmail_inbound_messages_total", kind="mail") >= 1
    assert "recruitmail_inbound_oldest_unrouted_seconds" in after
    assert "recruitmail_bulk_jobs_in_progress" in after
    assert (
        total(
            after,
            "recruitmail_http_requests_total",
            route="/v1/candidates/{candidate_id}/messages",
            status="202",
        )
        >= 1
    )
    # Labels carry statuses and routes, never an address or an id.
    exposition = "\n".join(after)
    assert "@" not in exposition and sent["id"] not in exposition
    # The worker's SDK metrics moved too.
    assert any(key.startswith("temporal_workflow_completed") for key in worker), list(worker)[:20]
    # The common send runs its steps as local activities.
    activity_metrics = ("temporal_activity_execution", "temporal_local_activity")
    assert sum(v for k, v in worker.items() if k.startswith(activity_metrics)) > 0, [
        k for k in worker if "activity" in k
    ]

    # One trace: the API request, its workflow, its activities.
    finished = spans.get_finished_spans()
    request = next(s for s in finished if s.name == "POST /v1/candidates/{candidate_id}/messages")
    in_trace = {s.name for s in finished if s.context.trace_id == request.context.trace_id}
    assert "StartWorkflow:send-message" in in_trace, in_trace
    assert "RunWorkflow:send-message" in in_trace, in_trace
    assert "RunActivity:deliver-message" in in_trace, in_trace


def test_the_alert_rules_pass_promtool_or_a_schema_check():
    rules = ROOT / "deploy" / "prometheus" / "alerts.yml"
    document = yaml.safe_load(rules.read_text())
    alerts = {rule["alert"]: rule for group in document["groups"] for rule in group["rules"]}
    assert {
        "MessageFailureRatioHigh",
        "InboundRoutingStuck",
        "ConsentWaitingTooLong",
    } <= set(alerts)
    for name, rule in alerts.items():
        assert rule["expr"] and rule["annotations"]["summary"], name
    promtool = shutil.which("promtool")
    if promtool:
        checked = subprocess.run(
            [promtool, "check", "rules", str(rules)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        config = subprocess.run(
            [promtool, "check", "config", "--syntax-only", str(rules.parent / "prometheus.yml")],
            capture_output=True,
            text=True,
        )
        assert config.returncode == 0, config.stdout + config.stderr
