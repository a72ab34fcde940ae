"""The runner's container continues the job's trace: its TRACEPARENT and the API's
OTLP exporter settings in its env, when traces are exported."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.backends.job_manifest import job_manifest
from runner import tracing
from tests.unit.api.backends.test_job_manifest import settings, spec

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def container_env(trace_env: dict[str, str] | None) -> dict[str, object]:
    job = job_manifest(spec(), "visualize", "heatmap", settings(), trace_env=trace_env)
    [container] = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.fixture
def tracing_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector.monitoring:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer collector-secret")
    tracing.start("unit", exporter=InMemorySpanExporter())
    yield
    tracing.stop()


@pytest.mark.usefixtures("tracing_on")
def test_the_runner_gets_the_trace_and_the_endpoint() -> None:
    env = container_env(tracing.runner_env(TRACEPARENT))
    assert env["TRACEPARENT"] == TRACEPARENT
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.monitoring:4318"
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in env  # a collector's credentials: not in a Job
    assert env["ZYRA_S3_BUCKET"] == "zyra"  # the plain env is still there


def test_nothing_while_tracing_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector.monitoring:4318")
    env = container_env(tracing.runner_env(TRACEPARENT))  # this process never started it
    assert not [name for name in env if name.startswith(("OTEL_", "TRACEPARENT"))]
    assert container_env(None) == env
