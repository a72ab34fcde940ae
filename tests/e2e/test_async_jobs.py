"""Async jobs through HTTP and WebSocket, on the embedded store and on real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from tests.e2e.conftest import ApiServer, start_api, stop_api
from tests.e2e.jobs_client import read_stream, submit, wait_finished, wait_status
from tests.services import RedisServer

LINES = 10_000


@pytest.fixture(scope="module", params=["embedded", "redis"])
def async_api(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    inputs: Path,
    redis_server: RedisServer,
) -> Iterator[ApiServer]:
    env = {"ZYRA_REDIS_URL": redis_server.url[:-1] + "1"} if request.param == "redis" else {}
    server = start_api(tmp_path_factory.mktemp(f"async-{request.param}"), inputs, **env)
    yield server
    stop_api(server)


@pytest.fixture
def client(async_api: ApiServer) -> Iterator[httpx.Client]:
    with async_api.client() as c:
        yield c


@pytest.fixture(scope="module")
def records(inputs: Path) -> tuple[Path, str]:
    """A JSON file of 10,000 records and the CSV the `zyra` CLI itself prints for it."""
    path = inputs / "records.json"
    path.write_text(json.dumps([{"i": i, "name": f"line {i}"} for i in range(LINES)]))
    zyra = Path(sys.executable).parent / "zyra"
    direct = subprocess.run(
        [zyra, "process", "api-json", str(path), "--format", "csv"],
        capture_output=True, check=True,
    )  # fmt: skip
    expected = direct.stdout.decode()
    assert expected.count("\n") == LINES + 1
    return path, expected


@pytest.fixture(scope="module")
def ten_thousand_line_job(async_api: ApiServer, records: tuple[Path, str]) -> tuple[str, list]:
    """Submitted, then watched by a client that connects before the job starts."""
    with async_api.client() as client:
        job_id = submit(
            client, "process", "api-json", {"file_or_url": str(records[0]), "format": "csv"}
        )
    stream = read_stream(async_api, job_id)
    return job_id, stream


def assert_complete(messages: list[dict], expected_stdout: str) -> None:
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "events lost or duplicated"
    assert "".join(m.get("stdout", "") for m in messages) == expected_stdout
    last = messages[-1]
    assert (last["status"], last["exit_code"], last["progress"]) == ("succeeded", 0, 1.0)
    assert all(
        "status" not in m or m["status"] not in ("succeeded", "failed") for m in messages[:-1]
    )


def test_client_connected_before_the_start_gets_every_line_in_order(
    ten_thousand_line_job, records
) -> None:
    _, stream = ten_thousand_line_job
    assert stream.messages[0]["seq"] == 1
    assert stream.messages[0]["status"] == "queued"
    assert_complete(stream.messages, records[1])
    assert stream.close_code == 1000


def test_client_connecting_after_the_end_gets_the_whole_history(
    async_api, ten_thousand_line_job, records
) -> None:
    job_id, first = ten_thousand_line_job
    late = read_stream(async_api, job_id)
    assert late.messages == first.messages
    assert late.close_code == 1000


def test_reconnect_with_since_loses_nothing(async_api, ten_thousand_line_job, records) -> None:
    job_id, full = ten_thousand_line_job
    head = read_stream(async_api, job_id, stop_after=3)
    tail = read_stream(async_api, job_id, since=head.messages[-1]["seq"])
    assert_complete(head.messages + tail.messages, records[1])
    assert head.messages + tail.messages == full.messages


def test_job_record_carries_the_output(client, ten_thousand_line_job, records) -> None:
    job_id, _ = ten_thousand_line_job
    job = client.get(f"/jobs/{job_id}").json()
    assert (job["status"], job["exit_code"], job["reason"]) == ("succeeded", 0, "Completed")
    assert job["stdout"] == records[1]
    assert job["mode"] == "async" and job["progress"] == 1.0
    assert job["submitted_by"] == "e2e"
    assert job["finished_at"] > job["started_at"] > job["created_at"]


def test_server_sent_events_carry_the_same_stream(client, ten_thousand_line_job) -> None:
    job_id, ws = ten_thousand_line_job
    messages, ids = [], []
    with client.stream("GET", f"/jobs/{job_id}/events", params={"since": 5}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"  # proxies must not hold events
        for line in response.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            elif line.startswith("data: "):
                messages.append(json.loads(line[6:]))
    assert messages == ws.messages[5:]
    assert ids == [m["seq"] for m in messages]


def test_failing_job_reports_exit_code_and_stderr(client, inputs) -> None:
    job_id = submit(
        client, "process", "convert-format",
        {"file_or_url": str(inputs / "garbage.grib2"), "format": "netcdf", "output": "x.nc"},
    )  # fmt: skip
    job = wait_finished(client, job_id)
    assert (job["status"], job["exit_code"], job["reason"]) == ("failed", 1, "Error")
    assert "no GRIB messages found" in job["stderr"]


def test_binary_stdout_of_an_async_job_is_an_output(client, inputs) -> None:
    job_id = submit(
        client, "process", "convert-format",
        {"file_or_url": str(inputs / "t2m.grib2"), "format": "netcdf", "stdout": True},
    )  # fmt: skip
    job = wait_finished(client, job_id)
    assert job["exit_code"] == 0, job["stderr"]
    assert job["stdout"] == "" and job["stdout_is_binary"] is True
    [output] = job["outputs"]
    assert output["name"] == "stdout.nc"
    data = client.get(f"/jobs/{job_id}/download").content
    assert data.startswith(b"CDF") and len(data) == output["size"]


def test_list_filters_and_pages(client, inputs) -> None:
    ids = {
        submit(client, "process", "convert-format",
               {"file_or_url": str(inputs / "garbage.grib2"), "format": "netcdf",
                "output": f"{i}.nc"})
        for i in range(3)
    }  # fmt: skip
    for job_id in ids:
        wait_finished(client, job_id)
    seen, cursor = [], None
    while True:
        page = client.get(
            "/jobs", params={"status": "failed", "stage": "transform", "limit": 2,
                             **({"cursor": cursor} if cursor else {})},
        ).json()  # fmt: skip
        assert len(page["jobs"]) <= 2
        seen += [j["job_id"] for j in page["jobs"]]
        assert all(j["status"] == "failed" and j["stage"] == "process" for j in page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "a job appeared on two pages"
    assert ids <= set(seen)
    created = [client.get(f"/jobs/{j}").json()["created_at"] for j in seen]
    assert created == sorted(created, reverse=True)
    bad = client.get("/jobs", params={"cursor": "nonsense"})
    assert bad.status_code == 422


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _processes_in(folder: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd").startswith(str(folder)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_cancel_stops_the_process_tree_within_the_grace_period(
    async_api, client, silent_server
) -> None:
    job_id = submit(client, "acquire", "http", {"url": silent_server, "output": "x"})
    wait_status(client, job_id, "running")
    job_dir = async_api.data_dir / "work" / job_id
    deadline = time.monotonic() + 30
    while not _processes_in(job_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_in(job_dir), "the command never started"
    started = time.monotonic()
    response = client.delete(f"/jobs/{job_id}")
    assert response.status_code == 200
    assert response.json()["cancelled"] is True
    job = wait_finished(client, job_id, timeout_s=30)
    elapsed = time.monotonic() - started
    assert (job["status"], job["reason"]) == ("cancelled", "Cancelled")
    assert job["exit_code"] == 143  # the command ended on SIGTERM
    assert elapsed < 2 + 3  # kill grace + slack
    assert _processes_in(job_dir) == []


def test_cancel_of_a_finished_job_changes_nothing(client, ten_thousand_line_job) -> None:
    job_id, _ = ten_thousand_line_job
    before = client.get(f"/jobs/{job_id}").json()
    response = client.delete(f"/jobs/{job_id}")
    assert response.status_code == 200
    assert response.json()["cancelled"] is False
    assert "already finished" in response.json()["message"]
    assert client.get(f"/jobs/{job_id}").json() == before


def test_unknown_jobs_are_404_and_close_4404(async_api, client) -> None:
    assert client.get("/jobs/nope").status_code == 404
    assert client.delete("/jobs/nope").status_code == 404
    assert client.get("/jobs/nope/events").status_code == 404
    stream = read_stream(async_api, "nope")
    assert stream.close_code == 4404 and stream.messages == []


def test_websocket_needs_a_key(async_api, ten_thousand_line_job) -> None:
    job_id, _ = ten_thousand_line_job
    assert read_stream(async_api, job_id, key=None).close_code == 4401
    assert read_stream(async_api, job_id, key="wrong").close_code == 4401


def test_a_two_stage_pipeline_runs_with_steady_progress(async_api, client, inputs) -> None:
    # A pipeline (workflow documents are refused): Zyra prints no "step k/n" for it.
    pipeline = {"stages": [
        {"stage": "process", "command": "convert-format",
         "args": {"file_or_url": str(inputs / "t2m.grib2"), "format": "netcdf",
                  "output": "out.nc"}},
        {"stage": "visualize", "command": "heatmap",
         "args": {"input": "out.nc", "var": "t", "output": "heat.png", "width": 100,
                  "height": 50, "no_coastline": True, "no_borders": True, "no_gridlines": True}},
    ]}  # fmt: skip
    job_id = submit(client, "run", None, {"config": pipeline})
    job = wait_finished(client, job_id)
    assert job["exit_code"] == 0, job["stderr"]
    messages = read_stream(async_api, job_id).messages
    progress = [m["progress"] for m in messages if "progress" in m]
    assert progress == sorted(progress)
    assert progress[0] == 0.0 and progress[-1] == 1.0
    assert {o["name"] for o in job["outputs"]} == {"out.nc", "heat.png"}


class _CallbackReceiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []
    failures_left: ClassVar[int] = 1

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if _CallbackReceiver.failures_left > 0:
            _CallbackReceiver.failures_left -= 1
            self.send_response(503)
        else:
            _CallbackReceiver.received.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_callback_gets_the_final_record_even_after_a_failed_attempt(client, inputs) -> None:
    _CallbackReceiver.received, _CallbackReceiver.failures_left = [], 1
    receiver = HTTPServer(("127.0.0.1", 0), _CallbackReceiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{receiver.server_port}/n8n/webhook"
        job_id = submit(
            client, "render", "heatmap",
            {"input": str(inputs / "field.npy"), "output": "cb.png", "no_coastline": True,
             "no_borders": True, "no_gridlines": True},
            callback_url=url,
        )  # fmt: skip
        wait_finished(client, job_id)
        deadline = time.monotonic() + 30
        while not _CallbackReceiver.received and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        receiver.shutdown()
    [payload] = _CallbackReceiver.received
    assert payload["job_id"] == job_id
    assert (payload["status"], payload["exit_code"]) == ("succeeded", 0)
    assert [o["name"] for o in payload["outputs"]] == ["cb.png"]
