"""Callbacks n8n cannot take at once, with the async example (docs/n8n/async-wait-callback.json)
in a real n8n: the service's retries still resume the execution's Wait node.

- A callback that comes before the execution has reached its Wait node: n8n answers 409
  ("running already"), and a retry resumes the execution once it waits.
- n8n down for 30 s while the job ends: connection refused, retried, delivered within
  seconds of n8n's restart on the same port and user folder (the waiting execution and its
  resume URL are in n8n's database).

These have an API and an n8n of their own (module scope): that n8n is stopped and
restarted, and the API retries at most MAX_BACKOFF_S apart (ZYRA_CALLBACK_MAX_BACKOFF_S).
The API lets the key run one async job at a time, so a job can be held queued
(`slot_held`) until n8n is down.
"""

from __future__ import annotations

import copy
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api
from tests.e2e.jobs_client import wait_finished
from tests.n8n.conftest import CREDENTIAL, EXAMPLES, MEASURED, slot_held, upload
from tests.n8n.n8n_client import Execution, N8nClient, load_workflow
from tests.n8n.n8n_server import N8nServer, n8n_binary

ASYNC_EXAMPLE = EXAMPLES / "async-wait-callback.json"
MAX_BACKOFF_S = 5
DOWN_S = 30
GATED_PATH = "zyra-async-callback-gated"  # the example's own path is taken by the example
GATE = "Test: first callback attempt made?"
FAILED_ATTEMPT = re.compile(  # api/jobs/callback_outbox.py, one line per attempt retried
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) WARNING zyra\.callbacks "
    r"job (?P<job>[0-9a-f]+): callback attempt (?P<n>\d+): (?P<error>.*); again in",
    re.MULTILINE,
)


@pytest.fixture(scope="module")
def retry_api(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Iterator[ApiServer]:
    server = start_api(
        tmp_path_factory.mktemp("callback-api"),
        inputs,
        ZYRA_OUTBOUND_ALLOW="127.0.0.1",  # n8n's resume URLs are on loopback
        ZYRA_CALLBACK_MAX_BACKOFF_S=str(MAX_BACKOFF_S),
        ZYRA_MAX_RUNNING_JOBS_PER_PRINCIPAL="1",
        ZYRA_FAIR_SHARE_DISPATCH_INTERVAL_S="0.5",
    )
    yield server
    stop_api(server)


@pytest.fixture(scope="module")
def retry_zyra(retry_api: ApiServer) -> Iterator[httpx.Client]:
    with retry_api.client() as client:
        yield client


@pytest.fixture(scope="module")
def retry_field(retry_zyra: httpx.Client, field_npy: bytes) -> str:
    return upload(retry_zyra, "field.npy", field_npy)["file_id"]


@pytest.fixture(scope="module")
def restartable_n8n(
    tmp_path_factory: pytest.TempPathFactory, retry_api: ApiServer
) -> Iterator[N8nServer]:
    server = N8nServer(
        n8n_binary(), tmp_path_factory.mktemp("n8n-restartable"), ZYRA_URL=retry_api.url
    )  # fmt: skip
    server.start()
    MEASURED["restartable n8n start-up"] = f"{server.startup_s:.1f} s"
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def restartable_client(restartable_n8n: N8nServer) -> Iterator[N8nClient]:
    client = N8nClient(restartable_n8n.url)
    client.set_up_owner_and_api_key()
    client.create_credential(CREDENTIAL, "httpHeaderAuth", {"name": "X-API-Key",
                                                            "value": API_KEY})  # fmt: skip
    yield client
    client.close()


def node(workflow: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in workflow["nodes"] if n["name"] == name)


def to(name: str) -> list[dict[str, Any]]:
    return [{"node": name, "type": "main", "index": 0}]


def callback_before_wait(example: dict[str, Any]) -> dict[str, Any]:
    """The example with a gate between "Accepted" and "Wait for callback": the execution
    goes on to its Wait node only once the job view shows a first callback attempt made,
    so that attempt certainly found the execution still running."""
    flow = copy.deepcopy(example)
    assert flow["connections"]["Accepted"] == {"main": [to("Wait for callback")]}
    flow["name"] += " (test: callback before the Wait)"
    trigger = node(flow, "Webhook")
    trigger["parameters"]["path"], trigger["webhookId"] = GATED_PATH, str(uuid.uuid4())
    # GET /jobs/{id}?wait=30: answers when the job ends (or has ended); the node reuses
    # the example's own GET (its URL and credential).
    job_view = copy.deepcopy(node(flow, "Job at time limit"))
    job_view.update(name="Test: job view", id=str(uuid.uuid4()), position=[990, 200])
    job_view["parameters"]["url"] += "?wait=30"
    gate = copy.deepcopy(node(flow, "Called back?"))
    condition = gate["parameters"]["conditions"]["conditions"][0]
    condition.update(id=str(uuid.uuid4()),
                     leftValue="={{ ($json.callback?.attempts ?? 0) >= 1 }}")  # fmt: skip
    gate.update(name=GATE, id=str(uuid.uuid4()), position=[990, 400])
    # Under 65 s a Wait node sleeps in the running execution (no webhook, not "waiting").
    pause = {
        "parameters": {"resume": "timeInterval", "amount": 0.5, "unit": "seconds"},
        "id": str(uuid.uuid4()), "name": "Test: pause", "type": "n8n-nodes-base.wait",
        "typeVersion": 1.1, "position": [1210, 400],
    }  # fmt: skip
    flow["nodes"] += [job_view, gate, pause]
    flow["connections"].update({
        "Accepted": {"main": [to(job_view["name"])]},
        job_view["name"]: {"main": [to(GATE)]},
        GATE: {"main": [to("Wait for callback"), to(pause["name"])]},
        pause["name"]: {"main": [to(job_view["name"])]},
    })  # fmt: skip
    return flow


def failed_attempts(api: ApiServer, job_id: str) -> list[tuple[datetime, int, str]]:
    """(when, attempt, error) of each attempt the API's log says it will retry."""
    return [
        (datetime.strptime(m["at"], "%Y-%m-%d %H:%M:%S,%f").astimezone(), int(m["n"]), m["error"])
        for m in FAILED_ATTEMPT.finditer(api.log_path.read_text(errors="replace"))
        if m["job"] == job_id
    ]


def wait_attempts(zyra: httpx.Client, job_id: str, attempts: int, timeout_s: float = 60) -> dict:
    """The job's `callback` once at least `attempts` attempts have been made."""
    deadline = time.monotonic() + timeout_s
    while (callback := zyra.get(f"/jobs/{job_id}").json()["callback"])["attempts"] < attempts:
        assert time.monotonic() < deadline, f"{attempts} callback attempts not made: {callback}"
        time.sleep(0.2)
    return callback


def assert_succeeded_with_the_job(execution: Execution, job_id: str) -> dict[str, Any]:
    """The Succeeded branch, a valid signature, the job's data; the callback body."""
    assert execution.status == "success", execution.error
    assert {"Verify signature", "Succeeded"} <= execution.nodes_run
    assert not {"Bad signature", "Did not succeed", "Timed out"} & execution.nodes_run
    verified = execution.json("Verify signature")
    assert verified["signature_valid"] is True
    result = execution.json("Succeeded")
    assert result["outcome"] == "succeeded"
    assert result["job_id"] == job_id and result["status"] == "succeeded"
    assert result["exit_code"] == 0 and [o["name"] for o in result["outputs"]] == ["map.png"]
    assert result["metadata"]["n8n_execution"] == execution.id
    return verified["job"]


def test_a_callback_that_first_meets_a_409_is_delivered_on_a_retry(
    restartable_n8n: N8nServer, restartable_client: N8nClient, retry_api: ApiServer,
    retry_zyra: httpx.Client, retry_field: str,
) -> None:  # fmt: skip
    restartable_client.import_workflow(callback_before_wait(load_workflow(ASYNC_EXAMPLE)))
    reply = restartable_client.webhook(GATED_PATH, json={"file_id": retry_field})
    assert reply.status_code == 200, reply.text
    accepted = reply.json()
    job_id = accepted["job_id"]
    execution = restartable_client.wait_execution(accepted["execution_id"])
    body = assert_succeeded_with_the_job(execution, job_id)

    # Before its Wait node, the execution itself read the first attempt's outcome: n8n
    # had answered 409 to the service, as the execution was running.
    seen = execution.json(GATE)
    assert seen["status"] == "succeeded"
    assert seen["callback"]["state"] == "pending" and seen["callback"]["attempts"] == 1
    assert (seen["callback"]["last_status"], seen["callback"]["last_error"]) == (409, "HTTP 409")
    assert f'409 The execution "{execution.id}" is running already.' in restartable_n8n.log()
    # The service's side: its log, and the job's delivery state.
    failed = failed_attempts(retry_api, job_id)
    assert failed, retry_api.log_path.read_text()[-3000:]
    assert failed[0][1:] == (1, "HTTP 409")
    assert all(error == "HTTP 409" for _, _, error in failed)
    callback = retry_zyra.get(f"/jobs/{job_id}").json()["callback"]
    assert callback["state"] == "delivered" and callback["delivered_at"]
    assert callback["attempts"] >= 2 and callback["attempts"] == len(failed) + 1
    assert callback["last_status"] == 200
    # The delivered body told of the attempt before it.
    assert body["callback"]["attempts"] == callback["attempts"]
    assert body["callback"]["last_status"] == 409


def test_a_receiver_down_for_30_s_gets_the_callback_once_back(
    restartable_n8n: N8nServer, restartable_client: N8nClient, retry_api: ApiServer,
    retry_zyra: httpx.Client, retry_field: str, silent_server: str,
) -> None:  # fmt: skip
    restartable_client.import_workflow(load_workflow(ASYNC_EXAMPLE))
    with slot_held(retry_zyra, silent_server):  # the job stays queued until n8n is down
        reply = restartable_client.webhook("zyra-async-callback", json={"file_id": retry_field})
        assert reply.status_code == 200, reply.text
        accepted = reply.json()
        job_id = accepted["job_id"]
        restartable_client.wait_execution(accepted["execution_id"], {"waiting"})
        assert retry_zyra.get(f"/jobs/{job_id}").json()["status"] == "queued"
        restartable_n8n.stop()  # the whole process group
        down_at, down_wall = time.monotonic(), datetime.now(UTC)
    try:
        job = wait_finished(retry_zyra, job_id)
        assert job["status"] == "succeeded", job
        refused = wait_attempts(retry_zyra, job_id, 2)
        assert refused["state"] == "pending" and refused["last_status"] is None
        assert "Connection refused" in refused["last_error"], refused
        time.sleep(max(0.0, DOWN_S - (time.monotonic() - down_at)))
    finally:
        up_wall, down_s = datetime.now(UTC), time.monotonic() - down_at
        restartable_n8n.start()  # same port and user folder: the execution still waits
    MEASURED["n8n down (stop to restart)"] = f"{down_s:.1f} s"
    MEASURED["n8n restart (spawn to ready)"] = f"{restartable_n8n.startup_s:.1f} s"

    execution = restartable_client.wait_execution(accepted["execution_id"], timeout=60)
    callback = retry_zyra.get(f"/jobs/{job_id}").json()["callback"]
    delivered = datetime.fromisoformat(callback["delivered_at"])
    MEASURED["callback delivered after n8n's restart began"] = (
        f"{(delivered - up_wall).total_seconds():.1f} s"
    )
    body = assert_succeeded_with_the_job(execution, job_id)
    assert down_wall < datetime.fromisoformat(job["finished_at"]) < up_wall  # ended while down
    assert callback["state"] == "delivered" and callback["attempts"] >= 2
    assert body["callback"]["attempts"] == callback["attempts"]
    # The API's log: connection errors while n8n was down, each retried.
    failed = failed_attempts(retry_api, job_id)
    while_down = [f for f in failed if down_wall <= f[0] <= up_wall]
    assert len(while_down) >= 2, failed
    assert all("ConnectError" in error and "Connection refused" in error
               for _, _, error in while_down), while_down  # fmt: skip
    assert callback["attempts"] == len(failed) + 1  # every attempt but the last was retried
