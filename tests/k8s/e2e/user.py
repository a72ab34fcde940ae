"""What a user does against the installed service: upload, run, wait, download, follow.

Polls every half second: the release keeps the chart's rate limits (600 requests a
minute per principal).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.k8s.e2e.release import Release

TERMINAL = {"succeeded", "failed", "cancelled"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Offline maps: no Natural Earth download.
NO_MAP_FEATURES = {"no_coastline": True, "no_borders": True, "no_gridlines": True}


def upload(client: httpx.Client, name: str, content: bytes) -> str:
    response = client.post("/upload", files={"file": (name, content)})
    assert response.status_code == 201, response.text
    return str(response.json()["file_id"])


def run_sync(client: httpx.Client, stage: str, command: str, args: dict[str, Any]) -> dict:
    response = client.post("/cli/run", json={"stage": stage, "command": command,
                                             "args": args, "mode": "sync"})  # fmt: skip
    assert response.status_code == 200, response.text
    return dict(response.json())


def submit(client: httpx.Client, stage: str, command: str, args: dict, **extra: Any) -> str:
    response = client.post("/cli/run", json={"stage": stage, "command": command, "args": args,
                                             "mode": "async", **extra})  # fmt: skip
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    return str(response.json()["job_id"])


def job(client: httpx.Client, job_id: str) -> dict:
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_finished(client: httpx.Client, job_id: str, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        record = job(client, job_id)
        if record["status"] in TERMINAL:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} did not finish in {timeout_s}s: {record}")
        time.sleep(0.5)


def wait_status(client: httpx.Client, job_id: str, status: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        record = job(client, job_id)
        if record["status"] == status:
            return record
        if record["status"] in TERMINAL or time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} never became {status}: {record}")
        time.sleep(0.5)


def download(client: httpx.Client, job_id: str) -> bytes:
    response = client.get(f"/jobs/{job_id}/download")
    assert response.status_code == 200, response.text[:500]
    return response.content


def read_stream(release: Release, job_id: str, timeout_s: float = 180) -> tuple[list[dict], int]:
    """Every WebSocket message of a job until the server closes; (messages, close code)."""
    url = release.url.replace("http://", "ws://") + f"/ws/jobs/{job_id}"
    messages: list[dict] = []
    deadline = time.monotonic() + timeout_s
    with connect(url, additional_headers={"X-API-Key": release.api_key},
                 open_timeout=30) as ws:  # fmt: skip
        try:
            while True:
                messages.append(json.loads(ws.recv(timeout=max(1, deadline - time.monotonic()))))
        except ConnectionClosed:
            pass
        code = ws.close_code
    assert code is not None
    return messages, code
