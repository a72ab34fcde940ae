"""Callers kept apart: alice's jobs (records, events, outputs) and uploads are hers and
the admin's; to bob they do not exist, on every route. Secret arguments reach no log and
no output, and only their owner sees them in a record.

On the embedded default (one API process) and on Redis with two API processes sharing
it and a storage folder: alice submits through one, bob and the admin read through the
other."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.conftest import ApiServer, start_api, stop_api
from tests.e2e.jobs_client import submit, wait_finished, wait_status
from tests.services import RedisServer

ALICE_KEY, BOB_KEY, OPS_KEY = (f"e2e-{name}-{uuid.uuid4().hex}" for name in ("alice", "bob", "ops"))
KEYS = f"alice:{ALICE_KEY},bob:{BOB_KEY},ops:{OPS_KEY} admin"
SECRET = f"hunter2-{uuid.uuid4().hex[:12]}"
MAP = {"no_coastline": True, "no_borders": True, "no_gridlines": True, "width": 120, "height": 60}
PNG_MAGIC = b"\x89PNG"
FTP_NOBODY = "ftp://127.0.0.1/data.txt"  # nothing listens: Zyra fails at once


@dataclass
class Deployment:
    front: ApiServer  # alice submits here
    back: ApiServer  # bob and the admin read here
    servers: list[ApiServer]


@pytest.fixture(scope="module", params=["embedded", "redis"])
def deployment(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    inputs: Path,
    redis_server: RedisServer,
) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp(f"ownership-{request.param}")
    if request.param == "embedded":
        server = start_api(tmp / "api", inputs, ZYRA_API_KEYS=KEYS)
        servers = [server]
    else:
        shared = {
            "ZYRA_API_KEYS": KEYS,
            "ZYRA_REDIS_URL": redis_server.url[:-1] + "5",
            "ZYRA_STORAGE_DIR": str(tmp / "storage"),
        }
        servers = [start_api(tmp / "front", inputs, **shared)]
        servers.append(start_api(tmp / "back", inputs, **shared))
    yield Deployment(servers[0], servers[-1], servers)
    for server in servers:
        stop_api(server)


@pytest.fixture
def alice(deployment: Deployment) -> Iterator[httpx.Client]:
    with deployment.front.client(ALICE_KEY) as client:
        yield client


@pytest.fixture
def bob(deployment: Deployment) -> Iterator[httpx.Client]:
    with deployment.back.client(BOB_KEY) as client:
        yield client


@pytest.fixture
def ops(deployment: Deployment) -> Iterator[httpx.Client]:
    with deployment.back.client(OPS_KEY) as client:
        yield client


def upload(client: httpx.Client, name: str, data: bytes) -> str:
    response = client.post("/upload", files={"file": (name, data)})
    assert response.status_code == 201, response.text
    return response.json()["file_id"]


def ftp_with_password() -> dict[str, Any]:
    return {"path": FTP_NOBODY, "user": "alice", "password": SECRET, "output": "data.txt"}


def pipeline(*stages: dict[str, Any]) -> dict[str, Any]:
    return {"stages": list(stages)}


@dataclass
class Alices:
    field: str  # an upload
    config: str  # an uploaded pipeline
    heatmap: str  # a finished job with one output, heat.png, made from `field`
    ftp: str  # acquire ftp with a password (fails)
    ftp_pipeline: str  # the same as a pipeline stage: Zyra prints the failing command line


@pytest.fixture(scope="module")
def alices(deployment: Deployment, inputs: Path) -> Alices:
    with deployment.front.client(ALICE_KEY) as client:
        field = upload(client, "field.npy", (inputs / "field.npy").read_bytes())
        heatmap_args = {"input": f"file_id:{field}", "output": "map.png", **MAP}
        heatmap_stage = {"stage": "visualize", "command": "heatmap", "args": heatmap_args}
        config = upload(client, "pipeline.json", json.dumps(pipeline(heatmap_stage)).encode())
        ftp_stage = {"stage": "acquire", "command": "ftp", "args": ftp_with_password()}
        jobs = [
            submit(client, "visualize", "heatmap", {**heatmap_args, "output": "heat.png"}),
            submit(client, "acquire", "ftp", ftp_with_password()),
            submit(client, "run", None, {"config": pipeline(ftp_stage)}),
        ]
        finished = [wait_finished(client, job_id) for job_id in jobs]
    assert finished[0]["status"] == "succeeded", finished[0]["stderr"]
    assert [j["status"] for j in finished[1:]] == ["failed", "failed"]
    return Alices(field, config, *jobs)


@dataclass
class Closed:
    messages: list[dict]
    code: int | None
    reason: str


def websocket(server: ApiServer, job_id: str, key: str) -> Closed:
    url = server.url.replace("http://", "ws://") + f"/ws/jobs/{job_id}"
    messages = []
    with connect(url, additional_headers={"X-API-Key": key}, open_timeout=30) as ws:
        try:
            while True:
                messages.append(json.loads(ws.recv(timeout=60)))
        except ConnectionClosed:
            pass
        return Closed(messages, ws.close_code, ws.close_reason or "")


def server_sent_events(client: httpx.Client, job_id: str) -> list[dict]:
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        body = response.read().decode()
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


def all_jobs(client: httpx.Client, **params: str) -> list[dict]:
    jobs, cursor = [], None
    while True:
        page = {"cursor": cursor} if cursor else {}
        response = client.get("/jobs", params={"limit": 3, **params, **page})
        assert response.status_code == 200, response.text
        jobs += response.json()["jobs"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return jobs


def same_as_unknown(client: httpx.Client, method: str, path: str, real_id: str) -> None:
    """`path` with `real_id` answers exactly as with an id that does not exist."""
    unknown = uuid.uuid4().hex
    theirs = client.request(method, path.format(real_id))
    nothing = client.request(method, path.format(unknown))
    assert nothing.status_code == 404, (path, nothing.text)
    assert theirs.status_code == 404, (path, theirs.text)
    assert theirs.text == nothing.text.replace(unknown, real_id), path


# --- bob: nothing of alice's exists -----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/jobs/{}"), ("DELETE", "/jobs/{}"), ("GET", "/jobs/{}/events"),
     ("GET", "/jobs/{}/download"), ("GET", "/jobs/{}/download?file=heat.png")],
)  # fmt: skip
def test_bob_is_answered_as_for_an_unknown_job(
    bob: httpx.Client, alices: Alices, method: str, path: str
) -> None:
    same_as_unknown(bob, method, path, alices.heatmap)


def test_bobs_websocket_closes_as_for_an_unknown_job(
    deployment: Deployment, alices: Alices
) -> None:
    unknown = uuid.uuid4().hex
    theirs = websocket(deployment.back, alices.heatmap, BOB_KEY)
    nothing = websocket(deployment.back, unknown, BOB_KEY)
    assert (theirs.code, theirs.messages) == (nothing.code, nothing.messages) == (4404, [])
    assert theirs.reason == nothing.reason.replace(unknown, alices.heatmap)


def test_bob_is_answered_as_for_an_unknown_upload(bob: httpx.Client, alices: Alices) -> None:
    same_as_unknown(bob, "GET", "/files/{}", alices.field)


def refusal(client: httpx.Client, args: dict[str, Any], stage: str, command: str | None) -> Any:
    response = client.post("/cli/run", json={"stage": stage, "command": command, "args": args})
    assert response.status_code == 422, response.text
    return response.json()["detail"]


@pytest.mark.parametrize("where", ["direct", "pipeline stage", "uploaded pipeline"])
def test_bob_cannot_run_on_alices_uploads(bob: httpx.Client, alices: Alices, where: str) -> None:
    def run_on(file_id: str) -> Any:
        if where == "uploaded pipeline":
            return refusal(bob, {"config": f"file_id:{file_id}"}, "run", None)
        args = {"input": f"file_id:{file_id}", "output": "map.png", **MAP}
        if where == "direct":
            return refusal(bob, args, "visualize", "heatmap")
        stage = {"stage": "visualize", "command": "heatmap", "args": args}
        return refusal(bob, {"config": pipeline(stage)}, "run", None)

    real_id = alices.config if where == "uploaded pipeline" else alices.field
    unknown = uuid.uuid4().hex
    theirs = json.dumps(run_on(real_id))
    assert theirs == json.dumps(run_on(unknown)).replace(unknown, real_id)
    assert "no uploaded file with id" in theirs


def test_bob_lists_his_own_jobs_only(deployment: Deployment, bob: httpx.Client) -> None:
    mine = submit(bob, "acquire", "ftp", {"path": FTP_NOBODY, "output": "x"})
    wait_finished(bob, mine)
    listed = all_jobs(bob)
    assert mine in [j["job_id"] for j in listed]
    assert {j["owner"] for j in listed} == {"key:bob"}  # alice's and the admin's are not there
    assert all_jobs(bob, owner="key:bob") == listed
    someone_else = bob.get("/jobs", params={"owner": "key:alice"})
    assert someone_else.json() == {"jobs": [], "next_cursor": None}


# --- alice and the admin ----------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "admin"])
def test_alice_and_the_admin_read_download_and_stream_her_job(
    deployment: Deployment, alices: Alices, who: str
) -> None:
    server, key = (deployment.front, ALICE_KEY) if who == "alice" else (deployment.back, OPS_KEY)
    with server.client(key) as client:
        job = client.get(f"/jobs/{alices.heatmap}").json()
        seen = (job["status"], job["owner"], job["submitted_by"])
        assert seen == ("succeeded", "key:alice", "alice")
        for path in ("/download", "/download?file=heat.png"):
            png = client.get(f"/jobs/{alices.heatmap}{path}")
            assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)
        assert server_sent_events(client, alices.heatmap)[-1]["status"] == "succeeded"
        assert client.get(f"/files/{alices.field}").json()["filename"] == "field.npy"
    streamed = websocket(server, alices.heatmap, key)
    assert streamed.code == 1000 and streamed.messages[-1]["status"] == "succeeded"


def test_the_admin_may_run_on_alices_upload(ops: httpx.Client, alices: Alices) -> None:
    args = {"input": f"file_id:{alices.field}", "output": "map.png", **MAP}
    body = {"stage": "visualize", "command": "heatmap", "args": args}
    response = ops.post("/cli/run", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["exit_code"] == 0, response.json()["stderr"]


def test_the_admin_lists_everyones_jobs_and_filters_by_owner(
    ops: httpx.Client, bob: httpx.Client, alices: Alices
) -> None:
    bobs = submit(bob, "acquire", "ftp", {"path": FTP_NOBODY, "output": "x"})
    everyone = {j["job_id"]: j["owner"] for j in all_jobs(ops)}
    assert everyone[alices.heatmap] == everyone[alices.ftp] == "key:alice"
    assert everyone[bobs] == "key:bob"
    only_alice = all_jobs(ops, owner="key:alice")
    assert {j["owner"] for j in only_alice} == {"key:alice"}
    assert {alices.heatmap, alices.ftp, alices.ftp_pipeline} <= {j["job_id"] for j in only_alice}
    assert bobs not in {j["job_id"] for j in only_alice}


def test_cancel_only_by_the_owner_or_the_admin(
    alice: httpx.Client, bob: httpx.Client, ops: httpx.Client, silent_server: str
) -> None:
    hanging = {"url": silent_server, "output": "x"}
    first, second = (submit(alice, "acquire", "http", hanging) for _ in range(2))
    for job_id in (first, second):
        wait_status(alice, job_id, "running")
        same_as_unknown(bob, "DELETE", "/jobs/{}", job_id)
        assert alice.get(f"/jobs/{job_id}").json()["status"] == "running"
    for client, job_id in ((ops, first), (alice, second)):
        response = client.delete(f"/jobs/{job_id}")
        assert response.status_code == 200 and response.json()["cancelled"] is True
        assert wait_finished(alice, job_id, timeout_s=30)["status"] == "cancelled"


# --- secret arguments -------------------------------------------------------------------


def test_only_the_owner_sees_her_password_argument(
    alice: httpx.Client, ops: httpx.Client, alices: Alices
) -> None:
    assert alice.get(f"/jobs/{alices.ftp}").json()["args"]["password"] == SECRET
    masked = {**ftp_with_password(), "password": "***"}
    assert ops.get(f"/jobs/{alices.ftp}").json()["args"] == masked
    listed = {j["job_id"]: j for j in all_jobs(ops, owner="key:alice")}
    assert listed[alices.ftp]["args"]["password"] == "***"
    [stage] = listed[alices.ftp_pipeline]["args"]["config"]["stages"]
    assert stage["args"]["password"] == "***"
    [own] = alice.get(f"/jobs/{alices.ftp_pipeline}").json()["args"]["config"]["stages"]
    assert own["args"]["password"] == SECRET
    assert SECRET not in json.dumps(all_jobs(ops))


def test_a_password_reaches_no_log_and_no_output(
    deployment: Deployment, alice: httpx.Client, ops: httpx.Client, alices: Alices
) -> None:
    failing = pipeline({"stage": "acquire", "command": "ftp", "args": ftp_with_password()})
    sync = alice.post("/cli/run", json={"stage": "run", "args": {"config": failing}})
    assert sync.status_code == 200, sync.text
    # Zyra's pipeline runner prints the failing stage's command line, password scrubbed.
    assert "Command: zyra acquire ftp" in sync.json()["stderr"]
    assert "--password ***" in sync.json()["stderr"]
    for client in (alice, ops):
        for job_id in (alices.ftp, alices.ftp_pipeline, sync.json()["job_id"]):
            job = client.get(f"/jobs/{job_id}").json()
            assert SECRET not in job["stdout"] + job["stderr"]
        assert "--password ***" in client.get(f"/jobs/{alices.ftp_pipeline}").json()["stderr"]
        assert SECRET not in json.dumps(server_sent_events(client, alices.ftp_pipeline))
    streamed = websocket(deployment.front, alices.ftp_pipeline, ALICE_KEY)
    assert "--password ***" in "".join(m.get("stderr", "") for m in streamed.messages)
    assert SECRET not in json.dumps(streamed.messages)
    runner_logs = [
        p for s in deployment.servers for p in (s.data_dir / "work").glob("*.runner.log")
    ]
    pipeline_log = [p for p in runner_logs if p.name.startswith(alices.ftp_pipeline)]
    assert pipeline_log and "--password ***" in pipeline_log[0].read_text()
    for path in [*runner_logs, *(s.log_path for s in deployment.servers)]:
        assert SECRET not in path.read_text(errors="replace"), path
