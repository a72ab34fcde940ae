"""Traces exported to an OTLP/HTTP receiver in the test: one trace per job, from the
submit request through the runner's command, its outputs and its terminal event; and
no export at all while no endpoint is configured."""

from __future__ import annotations

import gzip
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from websockets.sync.client import connect

from runner.tracing import ENDPOINT_ENVS
from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api, store_of
from tests.e2e.gunicorn_server import base_env, start_gunicorn
from tests.e2e.jobs_client import TERMINAL, submit, wait_finished
from tests.services import RedisServer

API, RUNNER = "zyra-orchestrator-api", "zyra-orchestrator-runner"
GUNICORN = ["gunicorn", "-c", "python:api.gunicorn_conf", "api.server:create_app()"]
HOOK_TOKEN = "webhook-capability-0123456789"  # a callback URL's secret part
DEFAULT_OTLP_PORT = 4318  # where an exporter sends when no endpoint is configured
MAP = {"no_coastline": True, "no_borders": True, "no_gridlines": True, "width": 120, "height": 60}


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, object]


@dataclass
class Receiver:
    """OTLP/HTTP traces on loopback: every span received, and how many requests came."""

    port: int = 0
    spans: list[Span] = field(default_factory=list)
    requests: int = 0
    callbacks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    spans.append(Span(
                        attributes["service.name"], s.name, s.trace_id.hex(), s.span_id.hex(),
                        s.parent_span_id.hex(),
                        {a.key: _value(a.value) for a in s.attributes},
                    ))  # fmt: skip
        with self.lock:
            self.requests += 1
            self.spans += spans

    def wait_for(self, found: Callable[[list[Span]], bool], timeout_s: float = 60) -> list[Span]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                spans = list(self.spans)
            if found(spans):
                return spans
            time.sleep(0.2)
        raise AssertionError(f"spans expected in {timeout_s}s, got: {[s.name for s in spans]}")


def _value(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(value, kind) if kind else None


def serve(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path == "/v1/traces":
                receiver.take(body)
            elif self.path.startswith("/hook/"):  # a job's callback
                receiver.callbacks += 1
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(404 if self.path.startswith("/v1/m") else 200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    yield from serve(Receiver())


@pytest.fixture(scope="module", params=["embedded", "redis"])
def traced_api(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    inputs: Path,
    receiver: Receiver,
    redis_server: RedisServer,
) -> Iterator[ApiServer]:
    redis = {"ZYRA_REDIS_URL": redis_server.url[:-1] + "3"} if request.param == "redis" else {}
    server = start_api(
        tmp_path_factory.mktemp(f"traced-{request.param}"), inputs,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_BSP_SCHEDULE_DELAY="200",  # batches leave within the test's patience
        **redis,
    )  # fmt: skip
    yield server
    stop_api(server)


def run_heatmap(client: httpx.Client, inputs: Path, **request: Any) -> httpx.Response:
    """A sync heatmap of the test's field, answered 200 (`request`: httpx's options)."""
    response = client.post("/cli/run", json={
        "stage": "visualize", "command": "heatmap", "mode": "sync",
        "args": {"input": str(inputs / "field.npy"), "output": "heat.png", **MAP},
    }, **request)  # fmt: skip
    assert response.status_code == 200, response.text
    return response


def by_id(spans: list[Span]) -> dict[str, Span]:
    return {s.span_id: s for s in spans}


def ancestry(span: Span, spans: list[Span]) -> list[Span]:
    """`span`, its parent, ... up to the root (as far as the parents were received)."""
    index, chain = by_id(spans), [span]
    while chain[-1].parent_id and chain[-1].parent_id in index:
        chain.append(index[chain[-1].parent_id])
    return chain


def named(spans: list[Span], name: str, service: str, trace_id: str | None = None) -> list[Span]:
    return [s for s in spans if s.name == name and s.service == service
            and (trace_id is None or s.trace_id == trace_id)]  # fmt: skip


def has(spans: list[Span], trace_id: str, wanted: list[tuple[str, str]]) -> bool:
    """Whether the trace's spans named `wanted` (name, service) have all arrived."""
    return all(named(spans, name, service, trace_id) for name, service in wanted)


def test_an_async_job_is_one_trace_from_submit_to_terminal_event(
    traced_api: ApiServer, receiver: Receiver, inputs: Path
) -> None:
    hook = f"{receiver.url}/hook/{HOOK_TOKEN}?token={HOOK_TOKEN}"
    with traced_api.client() as client:
        args = {"input": str(inputs / "field.npy"), "output": "heat.png", **MAP}
        job_id = submit(client, "visualize", "heatmap", args, callback_url=hook)
        follow = traced_api.url.replace("http://", "ws://") + f"/ws/jobs/{job_id}?api_key={API_KEY}"
        with connect(follow) as ws:  # a browser's follow: its key in the query
            while json.loads(ws.recv(timeout=120)).get("status") not in TERMINAL:
                pass
        assert wait_finished(client, job_id)["status"] == "succeeded"
    record = store_of(traced_api.env, traced_api.data_dir).get(job_id)
    assert record is not None and record.traceparent is not None
    trace_id = record.traceparent.split("-")[1]

    wanted = [("POST /cli/run", API), ("job.finalise", API), ("job.callback", API),
              ("runner.job", RUNNER)]  # fmt: skip
    spans = receiver.wait_for(lambda spans: has(spans, trace_id, wanted))
    in_trace = [s for s in spans if s.trace_id == trace_id]
    [command] = named(in_trace, "job.command", RUNNER)
    chain = [(s.service, s.name) for s in ancestry(command, in_trace)]
    assert chain == [
        (RUNNER, "job.command"),
        (RUNNER, "runner.job"),
        (API, "job.launch"),
        (API, "job.submit"),
        (API, "POST /cli/run"),
    ], chain
    assert ancestry(command, in_trace)[-1].parent_id == ""  # the submit request is the root
    [outputs] = named(in_trace, "job.outputs", RUNNER)
    assert outputs.attributes["zyra.outputs"] == 1
    assert named(in_trace, "job.events.publish", RUNNER)
    [finalise] = named(in_trace, "job.finalise", API)
    assert finalise.attributes["zyra.job_id"] == job_id
    assert ancestry(finalise, in_trace)[-1].name == "POST /cli/run"
    [callback] = named(in_trace, "job.callback", API)
    [post] = [s for s in in_trace if s.parent_id == callback.span_id]
    assert post.attributes.get("http.url", post.attributes.get("url.full")) == receiver.url + "/"
    everything = json.dumps([(s.name, s.attributes) for s in spans])
    assert API_KEY not in everything and HOOK_TOKEN not in everything
    assert "api_key=[redacted]" in everything  # the follow's span, its key redacted
    if "ZYRA_REDIS_URL" in traced_api.env:  # the job's Redis calls are in its trace
        redis_calls = [s for s in in_trace if s.attributes.get("db.system") == "redis"]
        assert any(finalise in ancestry(s, in_trace) for s in redis_calls)
        # ... and the polling loops' calls (the dispatcher's, the streams') start none
        assert not [s for s in spans if not s.parent_id and s.attributes.get("db.system")]


def test_a_sync_run_is_one_trace_with_its_command(
    traced_api: ApiServer, receiver: Receiver, inputs: Path
) -> None:
    with traced_api.client() as client:
        job_id = run_heatmap(client, inputs).json()["job_id"]
        client.get("/healthz")
        client.get("/readyz")
    record = store_of(traced_api.env, traced_api.data_dir).get(job_id)
    assert record is not None and record.traceparent is not None
    trace_id = record.traceparent.split("-")[1]
    wanted = [("POST /cli/run", API), ("job.finalise", API)]
    spans = receiver.wait_for(lambda spans: has(spans, trace_id, wanted))
    in_trace = [s for s in spans if s.trace_id == trace_id]
    [root] = [s for s in in_trace if not s.parent_id]
    assert (root.service, root.name) == (API, "POST /cli/run")
    for name in ("job.inputs", "job.command", "job.outputs", "job.events.publish",
                 "job.finalise"):  # fmt: skip
        [span] = named(in_trace, name, API)
        assert ancestry(span, in_trace)[-1] == root, name
    assert not named(spans, "job.command", RUNNER, trace_id)  # no runner for a sync run
    assert not [s for s in spans if "healthz" in s.name or "readyz" in s.name]


def test_a_caller_can_join_its_trace_but_not_hide_from_tracing(
    traced_api: ApiServer, receiver: Receiver, inputs: Path
) -> None:
    """A caller's `traceparent` makes its request part of the caller's trace, but its
    "not sampled" flag is not obeyed: the run is traced all the same. Nor does a path
    that merely contains a probe's name go untraced."""
    caller_trace = uuid.uuid4().hex  # the receiver keeps every run's spans
    with traced_api.client() as client:
        run_heatmap(
            client, inputs, headers={"traceparent": f"00-{caller_trace}-eee19b7ec3c1b174-00"}
        )
        assert client.get("/ui/static/metrics").status_code == 404
    wanted = [("POST /cli/run", API), ("job.command", API), ("job.finalise", API)]
    spans = receiver.wait_for(lambda spans: has(spans, caller_trace, wanted))
    [request] = named(spans, "POST /cli/run", API, caller_trace)
    assert request.parent_id == "eee19b7ec3c1b174"
    receiver.wait_for(lambda spans: bool(named(spans, "GET /ui/static/{name:path}", API)))


def test_gunicorn_workers_export_after_their_fork(
    tmp_path: Path, inputs: Path, receiver: Receiver
) -> None:
    """The provider is made in the worker (a batch processor's thread would not survive
    the fork): a sync run's spans arrive."""
    env = base_env(tmp_path / "data", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
                   OTEL_BSP_SCHEDULE_DELAY="200", OTEL_SERVICE_NAME="zyra-under-gunicorn",
                   ZYRA_ALLOWED_PATH_PREFIXES=str(inputs),
                   PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # fmt: skip
    server = start_gunicorn(GUNICORN, env, tmp_path)
    try:
        with server.client() as client:
            response = run_heatmap(client, inputs)
        trace_id = store_of({}, tmp_path / "data").get(response.json()["job_id"]).traceparent
        assert trace_id is not None
        wanted = [("POST /cli/run", "zyra-under-gunicorn"), ("job.command", "zyra-under-gunicorn")]
        spans = receiver.wait_for(lambda spans: has(spans, trace_id.split("-")[1], wanted))
    finally:
        server.stop()
    [command] = named(spans, "job.command", "zyra-under-gunicorn")
    assert ancestry(command, spans)[-1].name == "POST /cli/run"


def test_nothing_is_exported_without_an_endpoint(
    tmp_path_factory: pytest.TempPathFactory, inputs: Path
) -> None:
    """Listening where an exporter would send by default: nothing ever comes."""
    try:
        default = serve(Receiver(port=DEFAULT_OTLP_PORT))
        quiet = next(default)
    except OSError as exc:
        raise AssertionError(f"port {DEFAULT_OTLP_PORT} is taken on this machine: {exc}") from exc
    server = start_api(tmp_path_factory.mktemp("untraced"), inputs)
    try:
        assert not any(os.environ.get(name) for name in ENDPOINT_ENVS)  # none inherited
        with server.client() as client:
            args = {"input": str(inputs / "field.npy"), "output": "h.png", **MAP}
            job_id = submit(client, "visualize", "heatmap", args)
            assert wait_finished(client, job_id)["status"] == "succeeded"
            sync = client.post("/cli/run", json={
                "stage": "visualize", "command": "heatmap", "mode": "sync",
                "args": {"input": str(inputs / "field.npy"), "output": "h.png", **MAP},
            })  # fmt: skip
            assert sync.status_code == 200
        record = store_of(server.env, server.data_dir).get(job_id)
        assert record is not None and record.traceparent is None
    finally:
        stop_api(server)
    time.sleep(1)  # a batch processor would have sent by now (and at shutdown)
    assert quiet.requests == 0
    with pytest.raises(StopIteration):
        next(default)
