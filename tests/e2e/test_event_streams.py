"""Event streams (SSE `GET /jobs/{id}/events`, `WS /ws/jobs/{id}`) as clients see them:
every stream ends, whatever the job and wherever the client resumes; idle streams cost
the rest of the service nothing; they are bounded; and they end when the API stops."""

from __future__ import annotations

import json
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from api.jobs.records import JobRecord
from api.jobs.store import JobStore, SqliteJobStore
from tests.deploy.dockerfiles import DOCKERFILE_API, Dockerfile
from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api, store_of
from tests.e2e.gunicorn_server import base_env, start_gunicorn
from tests.services import RedisServer

HEATMAP = {"input": None, "output": "h.png", "width": 60, "height": 30,
           "no_coastline": True, "no_borders": True, "no_gridlines": True}  # fmt: skip
BEYOND_INT64 = 2**63  # one past the largest seq SQLite and Redis can hold
ALICE, BOB = "alice-key-5d1e", "bob-key-93aa"
GUNICORN = Dockerfile.parse(DOCKERFILE_API).exec_form("production", "CMD")  # the image's CMD


@pytest.fixture(scope="module", params=["embedded", "redis"])
def streams_api(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    inputs: Path,
    redis_server: RedisServer,
) -> Iterator[ApiServer]:
    env = {"ZYRA_REDIS_URL": redis_server.url[:-1] + "10"} if request.param == "redis" else {}
    env["ZYRA_MAX_STREAMS_PER_PRINCIPAL"] = "200"  # one key opens many idle streams
    server = start_api(tmp_path_factory.mktemp(f"streams-{request.param}"), inputs, **env)
    yield server
    stop_api(server)


@pytest.fixture
def client(streams_api: ApiServer) -> Iterator[httpx.Client]:
    with streams_api.client() as c:
        yield c


# --- clients --------------------------------------------------------------------------


@dataclass
class Sse:
    status: int
    headers: httpx.Headers
    messages: list[dict] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)


def sse(
    client: httpx.Client,
    job_id: str,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    silence_s: float = 20,
) -> Sse:
    """Every event until the server ends the response; httpx.ReadTimeout if it stays
    silent for `silence_s` (a stream that never ends)."""
    with client.stream("GET", f"/jobs/{job_id}/events", params=params, headers=headers,
                       timeout=httpx.Timeout(10, read=silence_s)) as response:  # fmt: skip
        got = Sse(response.status_code, response.headers)
        for line in response.iter_lines():
            if line.startswith("id: "):
                got.ids.append(int(line[4:]))
            elif line.startswith("data: "):
                got.messages.append(json.loads(line[6:]))
    return got


@dataclass
class Ws:
    messages: list[dict]
    code: int | None  # None: still open after `silence_s`
    reason: str


def ws_url(server_url: str, job_id: str, query: str = "") -> str:
    return server_url.replace("http://", "ws://") + f"/ws/jobs/{job_id}{query}"


def ws(server_url: str, job_id: str, query: str = "", key: str = API_KEY,
       silence_s: float = 20) -> Ws:  # fmt: skip
    messages: list[dict] = []
    with connect(ws_url(server_url, job_id, query), additional_headers={"X-API-Key": key},
                 open_timeout=10) as conn:  # fmt: skip
        try:
            while True:
                messages.append(json.loads(conn.recv(timeout=silence_s)))
        except ConnectionClosed:
            pass
        except TimeoutError:
            return Ws(messages, None, "")
        return Ws(messages, conn.close_code, conn.close_reason or "")


def open_raw_sse(server_url: str, job_id: str, key: str) -> tuple[socket.socket, str]:
    """An SSE request on a socket of its own, left open; its status line."""
    host, port = server_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())  # fmt: skip
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head.split(b"\r\n", 1)[0].decode()


def hang_up_abruptly(sock: socket.socket) -> None:
    """A reset, not a polite FIN: as a client whose machine or network went away."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# --- jobs -----------------------------------------------------------------------------


def recorded_job(store: JobStore, owner: str = "e2e", status: str = "running") -> JobRecord:
    """A job known only by its record, with no event in its log: a record from before
    sync runs had events, or one finalised by a process that died before appending
    its terminal event."""
    record = JobRecord(job_id=uuid.uuid4().hex, mode="sync", stage="visualize",
                       command="heatmap", args={}, submitted_by=owner, owner=f"key:{owner}",
                       status="running")  # fmt: skip
    if status != "running":
        record = finished(record)
    store.save(record)
    return record


def finished(record: JobRecord) -> JobRecord:
    ended = {"status": "failed", "exit_code": 3, "reason": "Error", "progress": 1.0,
             "finished_at": datetime.now(UTC)}  # fmt: skip
    return JobRecord.model_validate({**record.model_dump(), **ended})


def sync_heatmap(client: httpx.Client, inputs: Path) -> dict:
    args = {**HEATMAP, "input": str(inputs / "field.npy")}
    response = client.post("/cli/run", json={"stage": "visualize", "command": "heatmap",
                                             "mode": "sync", "args": args})  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


def assert_ends_with_the_record(messages: list[dict], record: JobRecord) -> None:
    last = messages[-1]
    assert (last["status"], last["exit_code"], last["reason"], last["progress"]) == (
        record.status,
        record.exit_code,
        record.reason,
        1.0,
    )
    assert not any(m.get("status") in ("succeeded", "failed", "cancelled") for m in messages[:-1])


# --- every stream ends ----------------------------------------------------------------


def test_a_finished_sync_jobs_streams_give_its_history_then_end(
    streams_api, client, inputs
) -> None:
    job = sync_heatmap(client, inputs)
    record = JobRecord.model_validate(client.get(f"/jobs/{job['job_id']}").json())
    events = sse(client, job["job_id"])
    assert events.status == 200
    assert events.ids == [m["seq"] for m in events.messages]
    assert_ends_with_the_record(events.messages, record)
    assert record.status == "succeeded"
    socket_ = ws(streams_api.url, job["job_id"])
    assert (socket_.code, socket_.messages) == (1000, events.messages)


def test_a_record_that_ended_without_a_terminal_event_ends_its_streams(streams_api, client) -> None:
    record = recorded_job(store_of(streams_api.env, streams_api.data_dir), status="failed")
    events = sse(client, record.job_id)
    assert events.status == 200
    assert [m["seq"] for m in events.messages] == events.ids == [1]
    assert_ends_with_the_record(events.messages, record)
    socket_ = ws(streams_api.url, record.job_id)
    assert (socket_.code, socket_.messages) == (1000, events.messages)
    # A browser's EventSource reconnects with the last id it saw: 204 tells it to stop.
    again = sse(client, record.job_id, headers={"Last-Event-ID": "1"})
    assert (again.status, again.messages) == (204, [])
    assert ws(streams_api.url, record.job_id, "?since=1") == Ws([], 1000, "")


def test_followers_of_a_running_job_end_when_its_record_ends_without_an_event(
    streams_api, client
) -> None:
    store = store_of(streams_api.env, streams_api.data_dir)
    record = recorded_job(store)
    with ThreadPoolExecutor(3) as pool:
        following = pool.submit(sse, client, record.job_id)
        past_the_end = pool.submit(sse, client, record.job_id, {"since": BEYOND_INT64})
        socket_ = pool.submit(ws, streams_api.url, record.job_id)
        time.sleep(1.5)
        assert not (following.done() or past_the_end.done() or socket_.done())
        ended = finished(record)
        store.save(ended)
        started = time.monotonic()
        events, nothing, closed = following.result(), past_the_end.result(), socket_.result()
        assert time.monotonic() - started < 5
    assert [m["seq"] for m in events.messages] == [1]
    assert_ends_with_the_record(events.messages, ended)
    assert (nothing.status, nothing.messages) == (200, [])  # it has seen everything
    assert (closed.code, closed.messages) == (1000, events.messages)


def test_since_and_last_event_id_take_every_value_the_schema_allows(
    streams_api, client, inputs
) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/jobs/{job_id}/events"]["get"]
    params = {p["name"].lower(): p["schema"] for p in operation["parameters"]}
    assert params["since"].get("minimum") == 0 and "maximum" not in params["since"]
    assert {"type": "string"} in params["last-event-id"].get("anyOf", [params["last-event-id"]])
    job_id = sync_heatmap(client, inputs)["job_id"]
    full = sse(client, job_id)
    end = full.ids[-1]
    for since in (end, BEYOND_INT64 - 1, BEYOND_INT64, 10**40):
        assert sse(client, job_id, {"since": since}).status == 204, since
        assert ws(streams_api.url, job_id, f"?since={since}") == Ws([], 1000, "")
    for last_id in (str(end), str(BEYOND_INT64), str(10**40)):
        assert sse(client, job_id, headers={"Last-Event-ID": last_id}).status == 204, last_id
    # Not an id this service hands out (EventSource sends back whatever it was given):
    # ignored, as if absent, never refused.
    for foreign in ("abc", "-1", "", "1.5", "0x10"):
        again = sse(client, job_id, headers={"Last-Event-ID": foreign})
        assert (again.status, again.messages) == (200, full.messages), foreign
    assert sse(client, job_id, {"since": 1}).messages == full.messages[1:]
    assert sse(client, job_id, {"since": -1}).status == 422
    too_long = client.get(f"/jobs/{job_id}/events", params={"since": "9" * 4301})
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == [
        "query",
        "since",
    ]  # past what the query parser reads (docs/architecture.md)


# --- idle streams cost nothing --------------------------------------------------------


def test_idle_streams_do_not_slow_other_requests(streams_api, client) -> None:
    def list_latency() -> float:
        times = []
        for _ in range(15):
            t = time.perf_counter()
            assert client.get("/jobs", params={"limit": 5}).status_code == 200
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    quiet = list_latency()
    record = recorded_job(store_of(streams_api.env, streams_api.data_dir))
    sockets = [open_raw_sse(streams_api.url, record.job_id, API_KEY) for _ in range(120)]
    try:
        assert {status for _, status in sockets} == {"HTTP/1.1 200 OK"}
        time.sleep(1)
        busy = list_latency()
    finally:
        for sock, _ in sockets:
            hang_up_abruptly(sock)
    assert busy < max(5 * quiet, 0.1), f"GET /jobs: {quiet * 1000:.0f} ms, then {busy * 1000:.0f}"


# --- bounded --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited_api(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Iterator[ApiServer]:
    server = start_api(
        tmp_path_factory.mktemp("streams-limited"), inputs,
        ZYRA_API_KEYS=f"alice:{ALICE},bob:{BOB}",
        ZYRA_MAX_STREAMS="3", ZYRA_MAX_STREAMS_PER_PRINCIPAL="2",
    )  # fmt: skip
    yield server
    stop_api(server)


def test_streams_are_bounded_per_principal_and_per_process_until_clients_leave(
    limited_api,
) -> None:
    store = store_of(limited_api.env, limited_api.data_dir)
    alices, bobs = recorded_job(store, "alice"), recorded_job(store, "bob")
    url = limited_api.url
    held = [open_raw_sse(url, alices.job_id, ALICE) for _ in range(2)]
    assert [status for _, status in held] == ["HTTP/1.1 200 OK"] * 2
    with limited_api.client(ALICE) as alice, limited_api.client(BOB) as bob:
        refused = alice.get(f"/jobs/{alices.job_id}/events")
        assert refused.status_code == 503
        assert refused.json()["limit"] == "ZYRA_MAX_STREAMS_PER_PRINCIPAL"
        assert "ZYRA_MAX_STREAMS_PER_PRINCIPAL=2" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) > 0
        closed = ws(url, alices.job_id, key=ALICE)
        assert closed.code == 1013 and "ZYRA_MAX_STREAMS_PER_PRINCIPAL=2" in closed.reason

        held.append(open_raw_sse(url, bobs.job_id, BOB))
        assert held[-1][1] == "HTTP/1.1 200 OK"
        refused = bob.get(f"/jobs/{bobs.job_id}/events")
        assert refused.status_code == 503
        assert refused.json()["limit"] == "ZYRA_MAX_STREAMS"
        assert "ZYRA_MAX_STREAMS=3" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) > 0
        closed = ws(url, bobs.job_id, key=BOB)
        assert closed.code == 1013 and "ZYRA_MAX_STREAMS=3" in closed.reason

        for sock, _ in held[:2]:
            hang_up_abruptly(sock)  # alice's machine went away
        deadline = time.monotonic() + 5
        while (status := open_raw_sse(url, bobs.job_id, BOB))[1] != "HTTP/1.1 200 OK":
            status[0].close()
            assert time.monotonic() < deadline, "the slots of clients that left never freed"
            time.sleep(0.2)
        held.append(status)
        # A WebSocket that leaves frees its slot too.
        with (
            connect(ws_url(url, alices.job_id), additional_headers={"X-API-Key": ALICE}) as conn,
            pytest.raises(TimeoutError),
        ):
            conn.recv(timeout=0.5)  # held open, not refused
        deadline = time.monotonic() + 5
        while (status := open_raw_sse(url, alices.job_id, ALICE))[1] != "HTTP/1.1 200 OK":
            status[0].close()
            assert time.monotonic() < deadline, "the WebSocket's slot never freed"
            time.sleep(0.2)
        held.append(status)
    for sock, _ in held[2:]:
        sock.close()


# --- shutdown closes streams ----------------------------------------------------------


@dataclass
class Followers:
    sse_open: threading.Event = field(default_factory=threading.Event)
    sse_ended_cleanly: threading.Event = field(default_factory=threading.Event)
    sse_error: list[BaseException] = field(default_factory=list)
    ws_open: threading.Event = field(default_factory=threading.Event)
    ws: list[Ws] = field(default_factory=list)


def follow(server_url: str, job_id: str) -> Followers:
    """An SSE and a WebSocket client on `job_id`, each in a thread of its own; returns
    once both streams are open."""
    followers = Followers()

    def read_sse() -> None:
        try:
            with (
                httpx.Client(base_url=server_url, headers={"X-API-Key": API_KEY}) as c,
                c.stream("GET", f"/jobs/{job_id}/events", timeout=60) as response,
            ):
                assert response.status_code == 200
                followers.sse_open.set()
                for _ in response.iter_lines():
                    pass
            followers.sse_ended_cleanly.set()  # the chunked body ended as it should
        except BaseException as exc:
            followers.sse_error.append(exc)

    def read_ws() -> None:
        with connect(ws_url(server_url, job_id), additional_headers={"X-API-Key": API_KEY},
                     open_timeout=30) as conn:  # fmt: skip
            followers.ws_open.set()
            messages = []
            try:
                while True:
                    messages.append(json.loads(conn.recv(timeout=60)))
            except ConnectionClosed:
                pass
            followers.ws.append(Ws(messages, conn.close_code, conn.close_reason or ""))

    threading.Thread(target=read_sse, daemon=True).start()
    threading.Thread(target=read_ws, daemon=True).start()
    assert followers.sse_open.wait(30) and followers.ws_open.wait(30), followers.sse_error
    return followers


def assert_stops_promptly_closing_streams(
    process: subprocess.Popen[bytes], followers: Followers, log: str | Path
) -> None:
    time.sleep(0.5)  # both streams idle
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        tail = Path(log).read_text()[-3000:]
        raise AssertionError(f"still running 5 s after SIGTERM:\n{tail}") from None
    deadline = time.monotonic() + 5
    while not followers.ws and time.monotonic() < deadline:
        time.sleep(0.05)
    assert followers.sse_ended_cleanly.wait(5), followers.sse_error
    [closed] = followers.ws
    # A close frame saying the server goes away: ours (1001), or uvicorn's own (1012)
    # when its shutdown reaches the socket first on a loaded machine.
    assert (closed.code in (1001, 1012), closed.messages) == (True, []), closed


def test_sigterm_ends_open_streams_and_the_api_exits_at_once(tmp_path, inputs) -> None:
    server = start_api(tmp_path, inputs)
    try:
        record = recorded_job(store_of(server.env, server.data_dir))
        followers = follow(server.url, record.job_id)
        assert_stops_promptly_closing_streams(server.process, followers, server.log_path)
    finally:
        stop_api(server)


def test_sigterm_under_gunicorn_ends_open_streams_and_exits_at_once(tmp_path, inputs) -> None:
    env = base_env(tmp_path / "data", PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin",
                   ZYRA_ALLOWED_PATH_PREFIXES=str(inputs))  # fmt: skip
    server = start_gunicorn(GUNICORN, env, tmp_path)
    try:
        record = recorded_job(SqliteJobStore(tmp_path / "data" / "jobs.sqlite3"))
        followers = follow(server.url, record.job_id)
        assert_stops_promptly_closing_streams(server.process, followers, server.stderr_path)
    finally:
        server.stop()
