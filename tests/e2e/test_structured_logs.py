"""ZYRA_LOG_FORMAT=json: a real API and its local runners write one JSON object per line,
each line of a job carries its job_id and its request's id, and no key or secret
argument is ever written."""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import API_KEY, start_api, stop_api
from tests.e2e.gunicorn_server import base_env, start_gunicorn
from tests.e2e.jobs_client import TERMINAL, wait_finished

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
SECRET = f"hunter2-{uuid.uuid4().hex[:12]}"  # a secret argument (acquire ftp's password)
BEARER = f"tok-{uuid.uuid4().hex}"  # a bearer token nobody issued
GUNICORN = ["gunicorn", "-c", "python:api.gunicorn_conf", "api.server:create_app()"]
MAP = {"no_coastline": True, "no_borders": True, "no_gridlines": True, "width": 120, "height": 60}


@dataclass
class Logged:
    api_lines: list[dict]
    api_text: str
    runner_lines: dict[str, list[dict]]  # job id: its runner's lines
    runner_text: str
    sync_id: str
    async_id: str
    secret_id: str
    ws_request_id: str
    fresh_ids: list[str]  # what the server answered to malformed X-Request-IDs


def json_lines(text: str, where: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            raise AssertionError(f"a line of {where} is not JSON: {line!r}") from None
        assert isinstance(doc, dict), line
        lines.append(doc)
    return lines


def post_run(client: httpx.Client, request_id: str, body: dict) -> httpx.Response:
    response = client.post("/cli/run", json=body, headers={"X-Request-ID": request_id})
    assert response.headers["X-Request-ID"] == request_id
    return response


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Iterator[Logged]:
    """A sync run, an async run (output lines), an async run with a secret argument, a
    WebSocket follow authenticated with `?api_key=`, a bearer token and an
    `?access_token=`, malformed request ids; then the API stopped and its logs read."""
    records = inputs / "log-records.json"
    records.write_text(json.dumps([{"i": i, "name": f"line {i}"} for i in range(20)]))
    server = start_api(tmp_path_factory.mktemp("json-logs"), inputs, ZYRA_LOG_FORMAT="json")
    try:
        with server.client() as client:
            sync = post_run(client, "e2e-sync.1", {
                "stage": "visualize", "command": "heatmap", "mode": "sync",
                "args": {"input": str(inputs / "field.npy"), "output": "heat.png", **MAP},
            })  # fmt: skip
            assert sync.status_code == 200 and sync.json()["status"] == "succeeded", sync.text
            submitted = post_run(client, "e2e-async.1", {
                "stage": "process", "command": "api-json", "mode": "async",
                "args": {"file_or_url": str(records), "format": "csv"},
            })  # fmt: skip
            assert submitted.status_code == 202, submitted.text
            async_id = submitted.json()["job_id"]
            secret = post_run(client, "e2e-secret.1", {
                "stage": "acquire", "command": "ftp", "mode": "async",
                "args": {"path": "ftp://127.0.0.1/data.txt", "user": "alice",
                         "password": SECRET, "output": "data.txt"},
            })  # fmt: skip
            assert secret.status_code == 202, secret.text
            secret_id = secret.json()["job_id"]
            ws_request_id = "e2e-ws.1"
            url = server.url.replace("http://", "ws://") + f"/ws/jobs/{async_id}?api_key={API_KEY}"
            with connect(url, additional_headers={"X-Request-ID": ws_request_id}) as ws:
                assert ws.response.headers["X-Request-ID"] == ws_request_id
                while json.loads(ws.recv(timeout=120)).get("status") not in TERMINAL:
                    pass
            assert wait_finished(client, async_id)["status"] == "succeeded"
            assert wait_finished(client, secret_id)["status"] == "failed"
            fresh_ids = [
                client.get("/jobs", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
                for bad in ("has space", "x" * 65, "semi;colon", "")
            ]
        with httpx.Client(base_url=server.url) as anonymous:
            bearer = anonymous.get("/jobs", headers={"Authorization": f"Bearer {BEARER}"})
            assert bearer.status_code == 401
            query = anonymous.get(f"/jobs?access_token={BEARER}")
            assert query.status_code == 401
    finally:
        stop_api(server)
    api_text = server.log_path.read_text()
    work = server.data_dir / "work"
    runner_texts = {j: (work / f"{j}.runner.log").read_text() for j in (async_id, secret_id)}
    yield Logged(
        api_lines=json_lines(api_text, "the API's output"),
        api_text=api_text,
        runner_lines={j: json_lines(t, f"runner {j}'s log") for j, t in runner_texts.items()},
        runner_text="".join(runner_texts.values()),
        sync_id=sync.json()["job_id"],
        async_id=async_id,
        secret_id=secret_id,
        ws_request_id=ws_request_id,
        fresh_ids=fresh_ids,
    )


def test_every_line_has_the_fields(logged: Logged) -> None:
    lines = logged.api_lines + [line for ls in logged.runner_lines.values() for line in ls]
    assert len(lines) > 10
    for line in lines:
        assert RFC3339_UTC.fullmatch(line["timestamp"]), line
        assert line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), line
        assert line["logger"] and isinstance(line["message"], str), line
    loggers = {line["logger"] for line in logged.api_lines}
    assert {"uvicorn.access", "uvicorn.error", "zyra.jobs"} <= loggers, loggers


def test_a_jobs_lines_carry_its_id_and_its_requests(logged: Logged) -> None:
    for job_id, request_id in ((logged.sync_id, "e2e-sync.1"), (logged.async_id, "e2e-async.1")):
        of_request = [line for line in logged.api_lines if line.get("request_id") == request_id]
        access = [line for line in of_request if line["logger"] == "uvicorn.access"]
        assert [(a["method"], a["path"], a["status_code"]) for a in access] == [
            ("POST", "/cli/run", 200 if job_id == logged.sync_id else 202)
        ]
        assert all(line.get("job_id") == job_id for line in access)
        assert all(line.get("principal") == "e2e" for line in access)
    finished = [line for line in logged.api_lines if line["message"] == "job finished"]
    assert {line["job_id"] for line in finished} == {
        logged.sync_id, logged.async_id, logged.secret_id
    }  # fmt: skip
    sync_end = next(line for line in finished if line["job_id"] == logged.sync_id)
    assert sync_end["request_id"] == "e2e-sync.1"  # finalised while its request ran


def test_the_websocket_follow_has_its_request_and_job(logged: Logged) -> None:
    ws = [line for line in logged.api_lines if line.get("request_id") == logged.ws_request_id]
    assert ws, "no line of the WebSocket follow"
    assert all(line["job_id"] == logged.async_id for line in ws)
    assert any("WebSocket" in line["message"] for line in ws)


def test_malformed_request_ids_are_replaced(logged: Logged) -> None:
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in logged.fresh_ids), logged.fresh_ids
    assert len(set(logged.fresh_ids)) == len(logged.fresh_ids)
    assert "has space" not in logged.api_text and "x" * 65 not in logged.api_text


def test_no_key_token_or_secret_argument_is_written(logged: Logged) -> None:
    for text in (logged.api_text, logged.runner_text):
        assert API_KEY not in text
        assert BEARER not in text
        assert SECRET not in text
    assert "api_key=[redacted]" in logged.api_text
    assert "access_token=[redacted]" in logged.api_text


def test_runner_lines_are_json_with_the_job_id(logged: Logged) -> None:
    for job_id, lines in logged.runner_lines.items():
        assert lines and all(line.get("job_id") == job_id for line in lines), lines
        assert {"runner started", "runner finished"} <= {line["message"] for line in lines}
    output = [
        line["message"]
        for line in logged.runner_lines[logged.async_id]
        if line["logger"] == "zyra.runner.output" and line["stream"] == "stdout"
    ]
    assert output[0] == "i,name" and output[1:] == [f"{i},line {i}" for i in range(20)]


def test_gunicorn_writes_json_lines_too(tmp_path: Path, inputs: Path) -> None:
    """The production server: Gunicorn's master and worker lines, uvicorn's access lines
    (through Gunicorn's handlers) and ours, on stdout and stderr."""
    env = base_env(tmp_path / "data", ZYRA_LOG_FORMAT="json",
                   PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # fmt: skip
    server = start_gunicorn(GUNICORN, env, tmp_path)
    try:
        with httpx.Client(base_url=server.url) as client:
            # The query's key is not taken on HTTP routes, but it would be logged.
            headers = {"X-Request-ID": "gun.1", "X-API-Key": API_KEY}
            answer = client.get(f"/jobs?api_key={API_KEY}", headers=headers)
            assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "gun.1"
    finally:
        server.stop()
    lines = json_lines(server.stdout, "Gunicorn's stdout") + json_lines(
        server.stderr, "Gunicorn's stderr"
    )
    loggers = {line["logger"] for line in lines}
    assert {"gunicorn.error", "uvicorn.access"} <= loggers, loggers
    [access] = [line for line in lines if line.get("request_id") == "gun.1"]
    assert access["logger"] == "uvicorn.access" and access["principal"] == "e2e"
    assert access["path"] == "/jobs?api_key=[redacted]"
    assert API_KEY not in server.stdout + server.stderr
