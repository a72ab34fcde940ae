"""What one request may carry, as a client meets it: a long argument runs like a short
one, a body over ZYRA_MAX_REQUEST_BODY_MB is 413 (before it has all arrived), an
argument over ZYRA_MAX_ARG_LENGTH or text that is not valid Unicode is 422 naming the
argument. Never a 500, and never a job left behind."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api
from tests.e2e.jobs_client import wait_finished

BODY_LIMIT_MB = 2
ARG_LIMIT = 500_000
LONG = 300_000  # beyond what one SOCK_SEQPACKET message to the template process holds


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Iterator[ApiServer]:
    server = start_api(
        tmp_path_factory.mktemp("api"),
        inputs,
        ZYRA_MAX_REQUEST_BODY_MB=str(BODY_LIMIT_MB),
        ZYRA_MAX_ARG_LENGTH=str(ARG_LIMIT),
    )
    yield server
    stop_api(server)


@pytest.fixture
def client(api: ApiServer) -> Iterator[httpx.Client]:
    with api.client() as c:
        yield c
    # Whatever the request was, nothing it started is left unsettled.
    with api.client() as c:
        jobs = c.get("/jobs", params={"limit": 100}).json()["jobs"]
    assert [j for j in jobs if j["status"] in ("queued", "running")] == []


def post_raw(client: httpx.Client, payload: dict) -> httpx.Response:
    """JSON with every non-ASCII character escaped (`\\ud800`), as any JSON encoder may
    send it: httpx's own would refuse a lone surrogate before sending."""
    return client.post(
        "/cli/run",
        content=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )


def extract(grib: Path, pattern: str | list[str]) -> dict:
    return {"stage": "process", "command": "extract-variable",
            "args": {"file_or_url": str(grib), "pattern": pattern}}  # fmt: skip


def test_a_300_kb_argument_runs_and_reaches_the_command(client: httpx.Client, inputs: Path) -> None:
    pattern = "no-such-variable-" + "x" * LONG + "-end"
    response = post_raw(client, extract(inputs / "t2m.grib2", pattern))
    assert response.status_code == 200, response.text[:2000]
    body = response.json()
    # Zyra names the pattern it did not find: all of it arrived.
    assert body["exit_code"] == 2 and body["reason"] == "Error"
    assert f"Variable not found: {pattern}" in body["stderr"]


def test_an_async_run_takes_the_same_long_argument(client: httpx.Client, inputs: Path) -> None:
    pattern = "no-such-variable-" + "x" * LONG + "-end"
    response = post_raw(client, {**extract(inputs / "t2m.grib2", pattern), "mode": "async"})
    assert response.status_code == 202, response.text[:2000]
    job = wait_finished(client, response.json()["job_id"])
    assert job["exit_code"] == 2 and f"Variable not found: {pattern}" in job["stderr"]


def test_an_argument_over_the_limit_is_422_naming_it(client: httpx.Client, inputs: Path) -> None:
    response = post_raw(client, extract(inputs / "t2m.grib2", "x" * (ARG_LIMIT + 1)))
    assert response.status_code == 422, response.text[:2000]
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "args", "pattern"]
    assert f"{ARG_LIMIT}" in problem["msg"] and "ZYRA_MAX_ARG_LENGTH" in problem["msg"]


def test_a_list_item_over_the_limit_is_422_naming_the_argument(
    client: httpx.Client, inputs: Path
) -> None:
    args = {"input": str(inputs / "field.npy"), "output": "h.png",
            "inputs": ["a.npy", "b" * (ARG_LIMIT + 1)]}  # fmt: skip
    response = post_raw(client, {"stage": "visualize", "command": "heatmap", "args": args})
    assert response.status_code == 422, response.text[:2000]
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "args", "inputs"]
    assert "ZYRA_MAX_ARG_LENGTH" in problem["msg"]


def test_a_body_over_the_limit_is_413_naming_it(client: httpx.Client, inputs: Path) -> None:
    # Every item is short: only the body as a whole is too large.
    many = ["x" * 1000] * (BODY_LIMIT_MB * 1100)
    response = post_raw(client, extract(inputs / "t2m.grib2", many))
    assert response.status_code == 413, response.text[:2000]
    assert "ZYRA_MAX_REQUEST_BODY_MB" in response.json()["detail"]


def _raw_exchange(api: ApiServer, head: str, body: bytes) -> bytes:
    """Send a request's head and the start of its body, never the rest; what comes back."""
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head.encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def test_a_declared_length_over_the_limit_is_413_before_the_body_arrives(
    api: ApiServer, client: httpx.Client
) -> None:
    head = (f"POST /cli/run HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {10 << 30}\r\n\r\n")  # fmt: skip
    answer = _raw_exchange(api, head, b'{"stage": "process", "args": {"x": "')
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:500]


def test_a_streamed_body_over_the_limit_is_413_as_soon_as_it_crosses_it(
    api: ApiServer, client: httpx.Client
) -> None:
    """No Content-Length: the server counts what arrives, and answers without waiting
    for an end that never comes."""
    head = (f"POST /cli/run HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    piece = b"x" * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    chunks = (BODY_LIMIT_MB << 20) // len(piece) + 1
    answer = _raw_exchange(api, head, chunk * chunks)  # and no terminating chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:500]


def test_a_lone_surrogate_in_an_argument_is_422_naming_it(
    client: httpx.Client, inputs: Path
) -> None:
    response = post_raw(client, extract(inputs / "t2m.grib2", "bad \ud800 text"))
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "args", "pattern"]
    assert "valid Unicode" in problem["msg"]


def test_a_lone_surrogate_anywhere_gets_an_answer_that_echoes_it_escaped(
    client: httpx.Client, inputs: Path
) -> None:
    stage = post_raw(client, {"stage": "\udcff", "command": "x", "args": {}})
    assert stage.status_code == 422, stage.text
    [problem] = stage.json()["detail"]
    assert problem["loc"] == ["body", "stage"] and problem["input"] == "\udcff"  # as sent
    unknown_name = post_raw(client, {"stage": "process", "command": "extract-variable",
                                     "args": {"\ud800": "x"}})  # fmt: skip
    assert unknown_name.status_code == 422, unknown_name.text
    assert unknown_name.json()["detail"][0]["loc"] == ["body", "args", "\ud800"]
