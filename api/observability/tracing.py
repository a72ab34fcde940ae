"""The API's traces: FastAPI (not its probes), Redis, botocore and httpx (callbacks),
exported over OTLP when an endpoint is configured (runner/tracing.py); else nothing
of OpenTelemetry is imported.

`instrument_app` (in `create_app`) adds FastAPI's middleware, whose spans wait for a
provider; `start` (in the lifespan) makes that provider: in each Gunicorn worker,
after its fork, since the batch processor's thread does not survive one.

Redis and S3 calls made outside any request or job (the dispatcher's and watchers'
polling loops) would each start a trace of their own every few seconds: a client span
without a parent is not sampled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from api.security.log_redaction import redact
from runner import tracing

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace.sampling import Sampler

API_SERVICE = "zyra-orchestrator-api"
# Probes and scrapes: a trace each, several a minute, saying nothing. Patterns are
# searched in the URL (scheme://host/path): anchored at both ends of the path, so that
# no other path (`/ui/static/metrics`) goes untraced.
EXCLUDED_URLS = ",".join(f"^[a-z]+://[^/]*/{path}$" for path in ("healthz", "readyz", "metrics"))
URL_ATTRIBUTES = ("http.url", "http.target", "url.full", "url.query")


def instrument_app(app: FastAPI) -> bool:
    """Server spans for every request but the probes'; whether tracing is configured."""
    if not tracing.configured():
        return False
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls=EXCLUDED_URLS,
        exclude_spans=["receive", "send"],  # a span per WebSocket message otherwise
        server_request_hook=_redact_server_url,
    )
    return True


def _redact_server_url(span: Any, scope: Any) -> None:
    """A WebSocket's `?api_key=` (or `?access_token=`): not in the span's URL."""
    _rewrite_urls(span, redact)


def _origin_only(span: Any, request: Any) -> None:
    """A callback URL may itself be a credential (a webhook's secret path or token):
    only its scheme, host and port leave in a span."""
    _rewrite_urls(span, _origin)


async def _origin_only_async(span: Any, request: Any) -> None:
    _origin_only(span, request)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/" if parts.hostname else "[redacted]"


def _rewrite_urls(span: Any, clean: Callable[[str], str]) -> None:
    attributes = getattr(span, "attributes", None) or {}
    for name in URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str) and (cleaned := clean(value)) != value:
            span.set_attribute(name, cleaned)


def start() -> bool:
    """The provider and the clients' instrumentation, in the serving process."""
    if tracing.enabled():
        return True
    if not tracing.configured():
        return False
    tracing.start(API_SERVICE, sampler=_no_orphan_client_spans())
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    for instrumentor, hooks in (
        (RedisInstrumentor(), {}),  # commands' arguments are left out ("SET ? ?")
        (BotocoreInstrumentor(), {}),
        (HTTPXClientInstrumentor(),
         {"request_hook": _origin_only, "async_request_hook": _origin_only_async}),
    ):  # fmt: skip
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(**hooks)
    return True


def stop() -> None:
    tracing.stop()


def _no_orphan_client_spans() -> Sampler:
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_ON,
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
    )
    from opentelemetry.trace import SpanKind

    class RootsButClientCalls(Sampler):
        """A trace starts at a request or a job, never at a background client call."""

        def should_sample(
            self, parent_context: Any, trace_id: int, name: str,
            kind: SpanKind | None = None, attributes: Any = None, links: Any = None,
            trace_state: Any = None,
        ) -> SamplingResult:  # fmt: skip
            if kind is SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return ALWAYS_ON.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return "RootsButClientCalls"

    # A caller's `traceparent` may join its request to the caller's trace, but its
    # "not sampled" flag decides nothing here: else a caller could keep its requests,
    # jobs and runners out of every trace.
    roots = RootsButClientCalls()
    return ParentBased(root=roots, remote_parent_not_sampled=roots)
