"""Callbacks a workflow can rely on, through the real API: retried past a 409 and a
receiver that is down, signed, with the client's headers, in the shape of
`GET /jobs/{id}`, and where delivery stands shown on the job."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.jobs.callback_signing import verify
from tests.e2e.conftest import ApiServer, start_api, stop_api
from tests.e2e.jobs_client import submit, wait_finished
from tests.services import free_port

SECRET = "a-workflow-secret-of-32-characters"
FAST_RETRIES = {
    "ZYRA_CALLBACK_MAX_BACKOFF_S": "1",  # attempts 1 s apart: the tests wait seconds
    "ZYRA_CALLBACK_RETRY_WINDOW_S": "60",
    "ZYRA_CALLBACK_NOT_FOUND_WINDOW_S": "4",
    "ZYRA_CALLBACK_TIMEOUT_S": "2",  # what a process killed mid-attempt holds up: 13 s
}


@pytest.fixture(scope="module")
def callback_api(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Iterator[ApiServer]:
    server = start_api(tmp_path_factory.mktemp("callbacks"), inputs, **FAST_RETRIES)
    yield server
    stop_api(server)


@pytest.fixture
def client(callback_api: ApiServer) -> Iterator[httpx.Client]:
    with callback_api.client() as c:
        yield c


@dataclass
class Delivery:
    at: float
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook on loopback answering each POST with the next of `answers`, then 200."""

    port: int
    answers: list[int] = field(default_factory=list)
    seen: list[Delivery] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook-waiting/42"

    def start(self) -> None:
        me = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                me.seen.append(Delivery(time.monotonic(), dict(self.headers.items()), body))
                self.send_response(me.answers.pop(0) if me.answers else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def wait_for(self, count: int, timeout_s: float = 60) -> list[Delivery]:
        deadline = time.monotonic() + timeout_s
        while len(self.seen) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.seen) >= count, f"{len(self.seen)} deliveries, expected {count}"
        return self.seen


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver(free_port())
    hook.start()
    yield hook
    hook.stop()


def heatmap(inputs: Path, name: str = "cb.png") -> dict[str, Any]:
    return {"input": str(inputs / "field.npy"), "output": name, "no_coastline": True,
            "no_borders": True, "no_gridlines": True}  # fmt: skip


def wait_until(
    client: httpx.Client,
    job_id: str,
    holds: Callable[[dict[str, Any]], bool],
    timeout_s: float = 60,
) -> dict[str, Any]:
    """The job's `callback` once `holds(callback)`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        callback = client.get(f"/jobs/{job_id}").json()["callback"]
        if holds(callback):
            return callback
        time.sleep(0.1)
    raise AssertionError(f"callback still {callback}")


def delivered(client: httpx.Client, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
    """The job once its callback is no longer pending."""
    wait_until(client, job_id, lambda c: c["state"] != "pending", timeout_s)
    return client.get(f"/jobs/{job_id}").json()


def test_a_callback_met_by_409_is_retried_and_the_job_says_it_was_delivered(
    client: httpx.Client, receiver: Receiver, inputs: Path
) -> None:
    # n8n answers 409 while the execution has not reached its Wait node yet.
    receiver.answers = [409, 409]
    job_id = submit(client, "visualize", "heatmap", heatmap(inputs), callback_url=receiver.url,
                    metadata={"execution": "n8n-17"})  # fmt: skip
    job = delivered(client, job_id)
    assert job["callback"]["state"] == "delivered"
    assert (job["callback"]["attempts"], job["callback"]["last_status"]) == (3, 200)
    first, second, third = receiver.wait_for(3)
    assert [d.headers["Zyra-Delivery-Attempt"] for d in receiver.seen] == ["1", "2", "3"]
    assert second.at - first.at >= 0.9 and third.at - second.at >= 0.9  # backed off
    # The body is the job as GET /jobs/{id} shows it, but for where delivery stood.
    body = third.json()
    assert body["callback"] == {**job["callback"], "state": "pending", "last_status": 409,
                                "last_error": "HTTP 409", "delivered_at": None}  # fmt: skip
    assert {k: v for k, v in body.items() if k != "callback"} == {
        k: v for k, v in job.items() if k != "callback"
    }
    assert (body["status"], body["exit_code"], body["metadata"]) == (
        "succeeded", 0, {"execution": "n8n-17"}
    )  # fmt: skip
    assert third.headers["Zyra-Job-Id"] == job_id
    assert "Zyra-Signature" not in third.headers  # no secret given


def test_a_receiver_down_for_a_while_still_gets_the_callback(
    client: httpx.Client, inputs: Path
) -> None:
    hook = Receiver(free_port())  # nothing listens there yet: connections are refused
    job_id = submit(client, "visualize", "heatmap", heatmap(inputs), callback_url=hook.url)
    wait_finished(client, job_id)
    time.sleep(3)
    pending = client.get(f"/jobs/{job_id}").json()["callback"]
    assert pending["state"] == "pending" and pending["attempts"] >= 2
    assert pending["last_status"] is None and "ConnectError" in pending["last_error"]
    hook.start()
    try:
        job = delivered(client, job_id)
        assert job["callback"]["state"] == "delivered"
        [delivery] = hook.wait_for(1)
        assert delivery.json()["job_id"] == job_id
    finally:
        hook.stop()


def test_a_signed_callback_verifies_and_carries_the_clients_headers_never_shown(
    client: httpx.Client, receiver: Receiver, inputs: Path
) -> None:
    headers = {"X-N8N-Auth": "header-auth-value", "Authorization": "Bearer for-the-hook"}
    job_id = submit(client, "visualize", "heatmap", heatmap(inputs), callback_url=receiver.url,
                    callback_secret=SECRET, callback_headers=headers)  # fmt: skip
    [delivery] = receiver.wait_for(1)
    assert delivery.headers["X-N8N-Auth"] == "header-auth-value"
    assert delivery.headers["Authorization"] == "Bearer for-the-hook"
    signature = delivery.headers["Zyra-Signature"]
    assert verify(SECRET, signature, delivery.body, now=time.time())
    assert not verify(SECRET, signature, delivery.body + b" ", now=time.time())
    assert not verify("another-secret-of-enough-length", signature, delivery.body, time.time())
    # Neither the secret nor the headers come back: not in the callback, not to the owner.
    job = delivered(client, job_id)
    listed = client.get("/jobs", params={"limit": 5}).json()["jobs"]
    for shown in (delivery.body.decode(), json.dumps(job), json.dumps(listed)):
        for secret in (SECRET, "header-auth-value", "for-the-hook", receiver.url):
            assert secret not in shown


def test_a_client_error_ends_delivery_and_a_404_is_retried_only_for_a_while(
    client: httpx.Client, receiver: Receiver, inputs: Path
) -> None:
    receiver.answers = [400]
    job_id = submit(client, "visualize", "heatmap", heatmap(inputs), callback_url=receiver.url)
    job = delivered(client, job_id)
    assert job["callback"] | {"next_attempt_at": None} == {
        "state": "failed", "attempts": 1, "last_status": 400, "last_error": "HTTP 400",
        "delivered_at": None, "next_attempt_at": None,
    }  # fmt: skip
    # 404 (a Wait node not listening yet) is retried for ZYRA_CALLBACK_NOT_FOUND_WINDOW_S.
    receiver.seen.clear()
    receiver.answers = [404] * 100
    job_id = submit(client, "visualize", "heatmap", heatmap(inputs), callback_url=receiver.url)
    job = delivered(client, job_id, timeout_s=30)
    assert (job["callback"]["state"], job["callback"]["last_status"]) == ("failed", 404)
    assert 3 <= job["callback"]["attempts"] == len(receiver.seen) <= 8


@pytest.mark.parametrize(
    ("extra", "loc", "says"),
    [
        ({"mode": "sync", "callback_url": "http://127.0.0.1:9/h"}, ["body", "callback_url"],
         "callbacks are for mode async"),
        ({"mode": "async", "callback_secret": SECRET}, ["body", "callback_secret"],
         "callback_secret needs a callback_url"),
        ({"mode": "async", "callback_url": "http://127.0.0.1:9/h", "callback_secret": "short"},
         ["body", "callback_secret"], "at least 16 characters"),
        ({"mode": "async", "callback_url": "http://127.0.0.1:9/h",
          "callback_headers": {"Host": "evil.example"}},
         ["body", "callback_headers", "Host", "[key]"], "set by the service itself"),
        ({"mode": "async", "callback_url": "http://127.0.0.1:9/h",
          "callback_headers": {"X-A": "one\r\nX-Injected: two"}},
         ["body", "callback_headers", "X-A"], "printable ASCII"),
        ({"mode": "async", "callback_url": "http://127.0.0.1:9/h",
          "callback_headers": {f"X-{i}": "v" for i in range(11)}},
         ["body", "callback_headers"], "at most 10 items"),
        ({"metadata": {"blob": "x" * 5000}}, ["body", "metadata"], "at most 4096 bytes"),
        ({"metadata": ["not", "an", "object"]}, ["body", "metadata"], "valid dictionary"),
    ],
    ids=["sync-callback", "secret-without-url", "short-secret", "reserved-header",
         "header-splitting", "too-many-headers", "metadata-too-large", "metadata-not-object"],
)  # fmt: skip
def test_bad_callback_options_and_metadata_are_refused_naming_the_field(
    client: httpx.Client, inputs: Path, extra: dict[str, Any], loc: list[Any], says: str
) -> None:
    body = {"stage": "visualize", "command": "heatmap", "args": heatmap(inputs), **extra}
    before = client.get("/jobs", params={"limit": 500}).json()["jobs"]
    answer = client.post("/cli/run", json=body)
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["detail"]
    assert problem["loc"] == loc and says in problem["msg"], problem
    assert answer.json()["message"].startswith(".".join(str(p) for p in loc[1:]))
    assert client.get("/jobs", params={"limit": 500}).json()["jobs"] == before  # no job made


def test_pending_callbacks_survive_an_api_restart(tmp_path: Path, inputs: Path) -> None:
    hook = Receiver(free_port())  # down while the first API process lives
    api = start_api(tmp_path / "first", inputs, **FAST_RETRIES)
    try:
        with api.client() as client:
            job_id = submit(client, "visualize", "heatmap", heatmap(inputs),
                            callback_url=hook.url)  # fmt: skip
            wait_finished(client, job_id)
            tried = wait_until(client, job_id, lambda c: c["attempts"] >= 1)
            assert tried["state"] == "pending"
    finally:
        api.process.kill()  # no goodbye: what it had scheduled dies with it
        api.process.wait()
    hook.start()
    again = start_api(tmp_path / "first", inputs, **FAST_RETRIES)
    try:
        with again.client() as client:
            job = delivered(client, job_id)
        assert job["callback"]["state"] == "delivered"
        assert [d.json()["job_id"] for d in hook.wait_for(1)] == [job_id]
    finally:
        stop_api(again)
        hook.stop()
