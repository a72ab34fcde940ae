"""Client-side helpers for async jobs: submit, wait, read the WebSocket stream."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.conftest import API_KEY, ApiServer

TERMINAL = {"succeeded", "failed", "cancelled"}


def submit(client: httpx.Client, stage: str, command: str | None, args: dict, **extra: Any) -> str:
    response = client.post(
        "/cli/run",
        json={"stage": stage, "command": command, "args": args, "mode": "async", **extra},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "accepted"
    return body["job_id"]


def wait_finished(client: httpx.Client, job_id: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s}s: {job}")


def wait_status(client: httpx.Client, job_id: str, status: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] == status:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never became {status}")


@dataclass
class Stream:
    messages: list[dict]
    close_code: int | None

    def text(self, stream: str) -> str:
        return "".join(m.get(stream, "") for m in self.messages)


def ws_url(api: ApiServer, job_id: str, since: int | None = None) -> str:
    url = api.url.replace("http://", "ws://") + f"/ws/jobs/{job_id}"
    return url + (f"?since={since}" if since is not None else "")


def read_stream(
    api: ApiServer,
    job_id: str,
    since: int | None = None,
    stop_after: int | None = None,
    key: str | None = API_KEY,
) -> Stream:
    """Messages until the server closes (or until `stop_after`, then hang up)."""
    headers = {"X-API-Key": key} if key else {}
    messages: list[dict] = []
    with connect(ws_url(api, job_id, since), additional_headers=headers, open_timeout=30) as ws:
        try:
            while stop_after is None or len(messages) < stop_after:
                messages.append(json.loads(ws.recv(timeout=120)))
        except ConnectionClosed:
            pass
        code = ws.close_code if stop_after is None or len(messages) < stop_after else None
    return Stream(messages, code)
