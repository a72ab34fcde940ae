"""OpenTelemetry traces, off unless an OTLP endpoint is configured.

The standard variables decide: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
`OTEL_EXPORTER_OTLP_ENDPOINT` (OTLP over HTTP/protobuf), `OTEL_SERVICE_NAME`
(else the caller's default), `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`
to turn them off again. Until `start` succeeds nothing of OpenTelemetry is imported:
`span` is a `nullcontext` and `current_ids` None, so the sync path pays nothing.

One trace per job: the API keeps the submit request's W3C `traceparent` in the job
record and gives it to the runner as `TRACEPARENT` (with the `OTEL_*` endpoint
variables), whose spans continue that trace. Shared by the API and the runner (which
must not import the API).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import Tracer

TRACEPARENT_ENV = "TRACEPARENT"
ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# Passed on to runners. Headers are left out: they may hold a collector's credentials,
# which a Job's plain environment would show to whoever may read Jobs.
RUNNER_ENV_PREFIXES = ("OTEL_EXPORTER_OTLP_", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_BSP_",
                       "OTEL_TRACES_SAMPLER", "OTEL_PROPAGATORS")  # fmt: skip
FLUSH_TIMEOUT_MS = 2000
MAX_HELD_SPANS = 1000  # a runner's: beyond, spans are dropped rather than memory grown
INSTRUMENTATION_NAME = "zyra-orchestrator"

Function = TypeVar("Function", bound=Callable[..., Any])
log = logging.getLogger("zyra.tracing")
_provider: TracerProvider | None = None
_tracer: Tracer | None = None


def configured(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces to be exported."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in ENDPOINT_ENVS)


def enabled() -> bool:
    return _tracer is not None


def start(
    default_service: str,
    exporter: SpanExporter | None = None,
    sampler: Sampler | None = None,
    *,
    held: bool = False,
) -> bool:
    """Export spans of this process as `OTEL_SERVICE_NAME` (else `default_service`)
    when configured (or given an `exporter`); whether tracing is on. Call it in the
    process that exports: after a fork, not before (the batch processor's thread does
    not survive one).

    `held`: no export thread; spans are kept and leave in `stop`. For a process that
    forks confined commands (a runner): the SDK starts its batch thread again in every
    fork's child, where it would run beside the command without the command's Landlock
    and no_new_privs, which bind one thread only."""
    global _provider, _tracer
    if _tracer is not None:
        return True
    if exporter is None and not configured():
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    service = os.environ.get("OTEL_SERVICE_NAME", "").strip() or default_service
    resource = Resource.create({"service.name": service})
    # No shutdown at exit: it would wait out an export retrying against an unreachable
    # collector (`stop` waits FLUSH_TIMEOUT_MS at most).
    provider = TracerProvider(resource=resource, sampler=sampler, shutdown_on_exit=False)
    if held:
        provider.add_span_processor(_held_processor(exporter or _otlp()))
    elif exporter is None:
        provider.add_span_processor(BatchSpanProcessor(_otlp()))
    else:  # tests: every span at once
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # for libraries' instrumentation; first one wins
    _provider, _tracer = provider, provider.get_tracer(INSTRUMENTATION_NAME)
    return True


def _otlp() -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _held_processor(exporter: SpanExporter) -> Any:
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExportResult

    class HeldSpans(SpanProcessor):
        """Ended spans kept in memory (a runner makes a handful), exported on flush."""

        def __init__(self) -> None:
            self.spans: list[ReadableSpan] = []
            self.lock = threading.Lock()

        def on_end(self, span: ReadableSpan) -> None:
            with self.lock:
                if len(self.spans) < MAX_HELD_SPANS:
                    self.spans.append(span)

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            with self.lock:
                spans, self.spans = self.spans, []
            return not spans or exporter.export(spans) is SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            exporter.shutdown()

    return HeldSpans()


def provider() -> TracerProvider | None:
    return _provider


def stop() -> None:
    """Export what is left, waiting FLUSH_TIMEOUT_MS at most: a collector that does not
    answer must not hold up a runner's exit (and so its job's end). Then spans are no
    longer made; the processor's thread, a daemon, goes with the process."""
    global _provider, _tracer
    if _provider is not None:
        # In a thread of its own: the SDK's force_flush ignores its timeout (it waits
        # out every retry of the exporter, OTEL_EXPORTER_OTLP_TIMEOUT, 10 s by default).
        flusher = threading.Thread(target=_provider.force_flush, daemon=True)
        flusher.start()
        flusher.join(FLUSH_TIMEOUT_MS / 1000)
        if flusher.is_alive():
            log.warning("spans not exported within %d ms are dropped", FLUSH_TIMEOUT_MS)
    _provider = _tracer = None


def span(
    name: str, attributes: Mapping[str, Any] | None = None, traceparent: str | None = None
) -> AbstractContextManager[Any]:
    """A span around a block, child of the current one (or of `traceparent`); a no-op
    while tracing is off."""
    if _tracer is None:
        return nullcontext()
    context = parent_context(traceparent) if traceparent else None
    return _tracer.start_as_current_span(name, context=context, attributes=attributes)


def parent_context(traceparent: str) -> Any:
    """The OTel context a W3C `traceparent` value names (an empty one if invalid)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span; None while tracing is off or outside
    any span."""
    if _tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, for log lines."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def runner_env(traceparent: str | None, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """What a runner needs to continue the job's trace: its `TRACEPARENT` and this
    process's exporter settings; nothing while tracing is off here."""
    if _tracer is None:
        return {}
    passed = {k: v for k, v in env.items()
              if k.startswith(RUNNER_ENV_PREFIXES) and not k.endswith("_HEADERS")}  # fmt: skip
    if traceparent:
        passed[TRACEPARENT_ENV] = traceparent
    return passed


def traced(name: str) -> Callable[[Function], Function]:
    """A function whose every call is a span `name` (a no-op while tracing is off)."""

    def decorate(function: Function) -> Function:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with span(name):
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
