"""A request's job is settled whatever fails between its record and the answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy
import pytest
from fastapi.testclient import TestClient

from api.server import create_app
from api.settings import Settings
from runner.execute import ExecutorUnavailableError

KEY = "settle-key"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    numpy.save(inputs / "field.npy", numpy.arange(100.0).reshape(10, 10))
    settings = Settings(
        api_keys=[f"unit:{KEY}"],
        data_dir=tmp_path / "data",
        allowed_path_prefixes=[str(inputs)],
    )
    with TestClient(
        create_app(settings), headers={"X-API-Key": KEY}, raise_server_exceptions=False
    ) as client:
        client.heatmap = {  # type: ignore[attr-defined]
            "stage": "visualize", "command": "heatmap", "mode": "sync",
            "args": {"input": str(inputs / "field.npy"), "output": "map.png",
                     "no_coastline": True, "no_borders": True, "no_gridlines": True},
        }  # fmt: skip
        yield client


def _break_executor(client: TestClient, error: BaseException, monkeypatch) -> None:
    def fail(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(client.app.state.job_service.executor, "run", fail)


def _only_job(client: TestClient) -> dict:
    [job] = client.get("/jobs").json()["jobs"]
    return client.get(f"/jobs/{job['job_id']}").json()


@pytest.mark.parametrize(
    ("error", "http_status"),
    [(RuntimeError("a bug"), 500), (ExecutorUnavailableError("restarting"), 503)],
)
def test_a_failed_sync_request_leaves_its_job_failed_not_running(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, error: BaseException, http_status: int
) -> None:
    _break_executor(client, error, monkeypatch)
    assert client.post("/cli/run", json=client.heatmap).status_code == http_status
    job = _only_job(client)
    assert (job["status"], job["reason"], job["exit_code"]) == ("failed", "Lost", None)
    assert "the service could not finish this run" in job["stderr"]
    # Its stream replays and ends like any other job's.
    with client.stream("GET", f"/jobs/{job['job_id']}/events") as events:
        body = "".join(events.iter_text())
    assert '"status": "failed"' in body and '"reason": "Lost"' in body


def test_a_sync_job_has_the_event_history_of_any_job(client: TestClient) -> None:
    answer = client.post("/cli/run", json=client.heatmap)
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["job_id"]
    with client.stream("GET", f"/jobs/{job_id}/events") as events:
        lines = [line for line in events.iter_lines() if line.startswith("data: ")]
    statuses = [s for line in lines if (s := _status(line))]
    assert statuses == ["queued", "running", "succeeded"]
    assert any('"stderr"' in line and "map.png" in line for line in lines)


def _status(line: str) -> str | None:
    return json.loads(line.removeprefix("data: ")).get("status")


def test_an_async_job_that_could_not_be_queued_is_failed_not_left_queued(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args, **_kwargs):
        raise RuntimeError("queue broken")

    monkeypatch.setattr(client.app.state.job_service.fair_share, "submit", refuse)
    assert client.post("/cli/run", json={**client.heatmap, "mode": "async"}).status_code == 500
    job = _only_job(client)
    assert (job["status"], job["reason"]) == ("failed", "Lost")
    assert "RuntimeError" in job["stderr"]
