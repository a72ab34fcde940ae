"""Traces: off (and OpenTelemetry not even imported) unless an endpoint is configured;
when on, spans continue the job's trace from a W3C traceparent."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runner import tracing
from runner.log_format import JsonFormatter

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_configured_only_with_an_endpoint(env: dict[str, str], on: bool) -> None:
    assert tracing.configured(env) is on


def test_off_costs_nothing_and_imports_no_opentelemetry() -> None:
    """In a fresh interpreter: the API, the runner, a span and a JSON line, all while
    no endpoint is configured."""
    code = """
import logging, os, sys
for name in [n for n in os.environ if n.startswith("OTEL_")]:
    del os.environ[name]
import api.server, api.jobs.service, api.observability.tracing, runner.__main__
from runner import tracing
from runner.log_format import JsonFormatter
assert api.observability.tracing.start() is False
with tracing.span("job.command") as span:
    assert span is None
assert tracing.current_traceparent() is None and tracing.runner_env("x") == {}
JsonFormatter().format(logging.LogRecord("n", 20, "", 0, "m", None, None))
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "unit-service")
    exporter = InMemorySpanExporter()
    assert tracing.start("default-name", exporter=exporter)
    yield exporter
    tracing.stop()
    assert not tracing.enabled()


def test_spans_continue_the_trace_they_are_given(exported: InMemorySpanExporter) -> None:
    job_span = tracing.span("runner.job", {"zyra.job_id": "j1"}, traceparent=TRACEPARENT)
    with job_span, tracing.span("job.command"):
        inner = tracing.current_traceparent()
    command, job = exported.get_finished_spans()
    assert (command.name, job.name) == ("job.command", "runner.job")
    assert job.context.trace_id == command.context.trace_id == int(TRACEPARENT[3:35], 16)
    assert job.parent.span_id == int(TRACEPARENT[36:52], 16)
    assert command.parent.span_id == job.context.span_id
    assert inner == f"00-{TRACEPARENT[3:35]}-{command.context.span_id:016x}-01"
    assert job.resource.attributes["service.name"] == "unit-service"  # OTEL_SERVICE_NAME
    assert job.attributes["zyra.job_id"] == "j1"


def test_a_failing_block_is_an_error_span(exported: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError), tracing.span("job.outputs"):
        raise RuntimeError("storage down")
    [span] = exported.get_finished_spans()
    assert span.status.status_code.name == "ERROR"
    assert span.events[0].name == "exception"


@pytest.mark.usefixtures("exported")
def test_log_lines_in_a_span_carry_its_ids() -> None:
    with tracing.span("job.submit"):
        trace_id, span_id = tracing.current_ids()  # type: ignore[misc]
        record = logging.LogRecord("n", 20, "", 0, "m", None, None)
        line = json.loads(JsonFormatter().format(record))
    assert (line["trace_id"], line["span_id"]) == (trace_id, span_id)
    assert len(trace_id) == 32 and len(span_id) == 16


@pytest.mark.usefixtures("exported")
def test_runner_env_passes_the_trace_and_the_exporter_but_no_headers() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer collector-token",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x=y",
        "OTEL_SERVICE_NAME": "the-api",  # the runner names itself
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod",
        "ZYRA_API_KEYS": "k:secret",
    }
    assert tracing.runner_env(TRACEPARENT, env) == {
        "TRACEPARENT": TRACEPARENT,
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod",
    }


def test_traced_functions_are_spans(exported: InMemorySpanExporter) -> None:
    @tracing.traced("job.submit")
    def submit(x: int) -> int:
        return x + 1

    assert submit(1) == 2
    assert [s.name for s in exported.get_finished_spans()] == ["job.submit"]


def test_an_unreachable_collector_holds_the_exit_two_seconds_at_most() -> None:
    """A runner's end (and so its job's) waits FLUSH_TIMEOUT_MS for the last spans, not
    the exporter's retries (10 s)."""
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    code = """
import time
from runner import tracing
tracing.start("unit")
with tracing.span("job.command"):
    pass
started = time.monotonic()
tracing.stop()
print(round(time.monotonic() - started, 1))
"""
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed}"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) <= tracing.FLUSH_TIMEOUT_MS / 1000 + 0.5
    assert time.monotonic() - started < 6  # the interpreter's exit does not wait either
    assert "spans not exported within 2000 ms are dropped" in done.stderr


@pytest.mark.parametrize(("held", "threads"), [(True, 1), (False, 2)])
def test_a_runners_forked_command_has_no_export_thread_beside_it(held: bool, threads: int) -> None:
    """Landlock and no_new_privs bind one thread: the runner's tracing must not start
    one in the command's fork (the SDK's batch processor does so after every fork)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    code = f"""
import os
from runner import tracing
from runner.sandbox import thread_count
assert tracing.start("unit", held={held})
with tracing.span("runner.job"):
    pass
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, str(thread_count()).encode())  # as the command's process counts them
    os._exit(0)
os.waitpid(pid, 0)
print(os.read(read, 16).decode())
"""
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed}"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == threads


def test_held_spans_leave_at_stop() -> None:
    exporter = InMemorySpanExporter()
    assert tracing.start("unit", exporter=exporter, held=True)
    try:
        with tracing.span("runner.job"), tracing.span("job.command"):
            pass
        assert exporter.get_finished_spans() == ()
    finally:
        tracing.stop()
    assert [s.name for s in exporter.get_finished_spans()] == ["job.command", "runner.job"]


def test_a_bad_exporter_setting_costs_the_traces_not_the_job() -> None:
    """A runner whose OTEL_* values cannot be used still runs its job (its exit code is
    the job's), saying why there are no traces."""
    code = """
import runner.__main__ as runner
runner.load_spec = lambda path: type("Spec", (), {"job_id": "j1"})()
runner._run = lambda spec: 7  # the job, as far as this test goes
runner.main()
"""
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
           "OTEL_ATTRIBUTE_COUNT_LIMIT": "many", "ZYRA_LOG_FORMAT": "text"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 7, done.stderr
    assert "traces are off: could not start them" in done.stderr
