"""Outbound requests through the real API: callbacks and URL arguments reach only public
addresses or what ZYRA_OUTBOUND_ALLOW lists.

Every server here listens on loopback; refused URLs naming private or link-local
addresses are refused from their text, before any packet could be sent.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ApiServer, start_api, stop_api
from tests.e2e.jobs_client import submit, wait_finished

HINT = "allowed destinations: public addresses or ZYRA_OUTBOUND_ALLOW"
CSV = b"time,value\n2024-01-01,1\n2024-01-02,4\n"


@pytest.fixture(scope="module")
def strict_api(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Iterator[ApiServer]:
    """An API that allows no destination besides public addresses."""
    server = start_api(tmp_path_factory.mktemp("strict"), inputs, ZYRA_OUTBOUND_ALLOW="")
    yield server
    stop_api(server)


@pytest.fixture
def strict(strict_api: ApiServer) -> Iterator[httpx.Client]:
    with strict_api.client() as c:
        yield c


class Receiver:
    """A loopback HTTP server recording what reaches it; answers GET with CSV and POST
    with 204, or with `redirect` (status, Location)."""

    def __init__(self, redirect: tuple[int, str] | None = None) -> None:
        self.seen: list[tuple[str, str, bytes]] = []
        self.redirect = redirect
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                owner.seen.append((self.command, self.path, self.rfile.read(length)))
                if owner.redirect:
                    self.send_response(owner.redirect[0])
                    self.send_header("Location", owner.redirect[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.command == "GET":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/csv")
                    self.send_header("Content-Length", str(len(CSV)))
                    self.end_headers()
                    self.wfile.write(CSV)
                else:
                    self.send_response(204)
                    self.end_headers()

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_port

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback port that would notice a connection."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        sock.settimeout(0.5)
        yield sock


def job_ids(client: httpx.Client) -> set[str]:
    return {job["job_id"] for job in client.get("/jobs", params={"limit": 500}).json()["jobs"]}


def refusal(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/cli/run", json={"mode": "sync", **body})
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    return problem


def heard_nothing(sock: socket.socket) -> bool:
    try:
        sock.accept()[0].close()
    except TimeoutError:
        return True
    return False


# --- refused --------------------------------------------------------------------------


def test_a_loopback_callback_is_refused_naming_callback_url(
    strict: httpx.Client, listener: socket.socket
) -> None:
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    before = job_ids(strict)
    response = strict.post("/cli/run", json={
        "stage": "acquire", "command": "http", "mode": "async", "callback_url": url,
        "args": {"url": "https://data.example.org/a.csv", "output": "a.csv"},
    })  # fmt: skip
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "callback_url"]
    assert problem["msg"] == f"127.0.0.1 is a loopback address; {HINT}"
    assert job_ids(strict) == before and heard_nothing(listener)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://10.0.0.1/x", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[::1]:8080/", "::1 is a loopback address"),
        ("http://localhost/", "localhost is a loopback name"),
        ("http://localhost:{port}/x", "localhost is a loopback name"),
        ("http://127.0.0.1:{port}/x", "127.0.0.1 is a loopback address"),
    ],
)
def test_a_url_argument_to_an_internal_destination_is_refused_before_anything_runs(
    strict: httpx.Client, listener: socket.socket, url: str, says: str
) -> None:
    url = url.format(port=listener.getsockname()[1])
    before = job_ids(strict)
    problem = refusal(strict, {"stage": "acquire", "command": "http",
                               "args": {"url": url, "output": "x"}})  # fmt: skip
    assert problem["loc"] == ["body", "args", "url"] and problem["type"] == "url"
    assert problem["msg"].startswith(says) and problem["msg"].endswith(HINT)
    assert problem["input"] == url
    # The same inside a pipeline stage names the stage.
    problem = refusal(strict, {"stage": "run", "args": {"config": {"stages": [
        {"stage": "acquire", "command": "http", "args": {"url": url, "output": "x"}},
    ]}}})  # fmt: skip
    assert problem["loc"] == ["body", "args", "config", "stages", 0, "url"]
    assert problem["msg"].startswith(f"stage 1 (acquire http): {says}")
    assert job_ids(strict) == before  # nothing ran
    assert heard_nothing(listener)


def test_other_url_arguments_are_checked_too(strict: httpx.Client) -> None:
    cases = [
        ({"stage": "search", "command": "api",
          "args": {"url": ["http://kubernetes.default.svc/api"], "api_query": "q"}}, "url"),
        ({"stage": "acquire", "command": "api",
          "args": {"url": "http://[::ffff:169.254.169.254]/", "output": "x"}}, "url"),
        ({"stage": "disseminate", "command": "post",
          "args": {"input": "x.json", "url": "http://redis:6379/"}}, "url"),
    ]  # fmt: skip
    for body, arg in cases:
        problem = refusal(strict, body)
        assert problem["loc"] == ["body", "args", arg], problem
        assert problem["msg"].endswith(HINT)


# --- allowed (the session API allows 127.0.0.1: tests/e2e/conftest.py) -----------------


def test_the_allow_list_admits_a_loopback_server(
    client: httpx.Client, receivers: list[Receiver]
) -> None:
    receivers.append(data := Receiver())
    response = client.post("/cli/run", json={
        "stage": "acquire", "command": "http", "mode": "sync",
        "args": {"url": f"http://127.0.0.1:{data.port}/series.csv", "output": "series.csv"},
    })  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["exit_code"] == 0, body["stderr"]
    assert [o["name"] for o in body["outputs"]] == ["series.csv"]
    assert client.get(f"/jobs/{body['job_id']}/download").content == CSV
    assert data.seen == [("GET", "/series.csv", b"")]


def test_an_allowed_callback_is_delivered(client: httpx.Client, receivers: list[Receiver]) -> None:
    receivers.append(data := Receiver())
    receivers.append(hook := Receiver())
    job_id = submit(
        client, "acquire", "http",
        {"url": f"http://127.0.0.1:{data.port}/a.csv", "output": "a.csv"},
        callback_url=f"http://127.0.0.1:{hook.port}/n8n/webhook",
    )  # fmt: skip
    assert wait_finished(client, job_id)["status"] == "succeeded"
    wait_until(lambda: hook.seen)
    [(method, path, payload)] = hook.seen
    assert (method, path) == ("POST", "/n8n/webhook") and job_id.encode() in payload


@pytest.mark.parametrize("status", [302, 307])
def test_a_callback_redirect_to_a_refused_destination_is_not_followed(
    client: httpx.Client, receivers: list[Receiver], status: int
) -> None:
    receivers.append(data := Receiver())
    receivers.append(inner := Receiver())  # on loopback too, but reached as `localhost`
    receivers.append(hook := Receiver((status, f"http://localhost:{inner.port}/internal")))
    job_id = submit(
        client, "acquire", "http",
        {"url": f"http://127.0.0.1:{data.port}/a.csv", "output": "a.csv"},
        callback_url=f"http://127.0.0.1:{hook.port}/hook",
    )  # fmt: skip
    wait_finished(client, job_id)
    wait_until(lambda: hook.seen)
    time.sleep(1.5)  # a followed redirect would have arrived by now
    assert hook.seen[0][:2] == ("POST", "/hook")
    assert inner.seen == []


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redirect_zyra_follows_by_itself_cannot_reach_a_refused_destination(
    client: httpx.Client, receivers: list[Receiver], mode: str
) -> None:
    """The API checked the URL; the command's own process holds what Zyra then connects
    to (the redirect target, `localhost`, resolves to loopback) to the same rule."""
    receivers.append(inner := Receiver())
    receivers.append(data := Receiver((302, f"http://localhost:{inner.port}/internal.csv")))
    response = client.post("/cli/run", json={
        "stage": "acquire", "command": "http", "mode": mode,
        "args": {"url": f"http://127.0.0.1:{data.port}/a.csv", "output": "a.csv"},
    })  # fmt: skip
    assert response.status_code in (200, 202), response.text
    job = response.json() if mode == "sync" else wait_finished(client, response.json()["job_id"])
    assert job["exit_code"] != 0
    assert "localhost is" in job["stderr"] and HINT in job["stderr"]
    assert data.seen and {seen[:2] for seen in data.seen} == {("GET", "/a.csv")}  # Zyra retries
    assert inner.seen == []


def wait_until(condition, timeout_s: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
