"""Traces: an API request, the workflow it starts and that workflow's activities form one trace.

Instrumentation is always in place (FastAPI's, and Temporal's TracingInterceptor on every client,
which workers inherit); what leaves the process is the SDK's choice: spans are exported over
OTLP/HTTP when `RECRUITMAIL_OTLP_ENDPOINT` is set, and not at all when it is not.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

from core.settings import Settings


def configure_tracing(settings: Settings, process: str) -> bool:
    """Export this process's spans over OTLP if an endpoint is set; True when it is."""
    if not settings.otlp_endpoint:
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": f"recruitmail-{process}"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
    )
    trace.set_tracer_provider(provider)
    return True


def temporal_interceptors() -> list[Interceptor]:
    """Carry the trace context from a client's call into the workflow and its activities."""
    return [TracingInterceptor()]
