"""`JobService.run`, the one call behind `POST /cli/run`."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from api.jobs.callbacks import CallbackRefusedError
from runner.outbound import OutboundPolicy

PIPELINE = {"stages": [{"stage": "visualize", "command": "heatmap",
                        "args": {"input": "field.npy", "output": "map.png"}}]}  # fmt: skip


def test_the_callback_check_resolves_names_off_the_event_loop(
    app_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    where: list[str] = []

    def check(url: str, policy: OutboundPolicy) -> None:
        try:
            asyncio.get_running_loop()
            where.append("on the event loop")
        except RuntimeError:
            where.append("in a worker thread")
        raise CallbackRefusedError(url, "refused by this test")  # no job, no delivery

    monkeypatch.setattr("api.jobs.service.check_callback", check)
    r = app_client.post(
        "/cli/run",
        json={"stage": "run", "args": {"config": PIPELINE}, "mode": "async",
              "callback_url": "https://hooks.example/done"},
    )  # fmt: skip
    assert (r.status_code, where) == (422, ["in a worker thread"])
    assert r.json()["detail"][0]["msg"] == "refused by this test"


def test_an_async_run_answers_202_with_the_queued_job(app_client: TestClient) -> None:
    r = app_client.post(
        "/cli/run", json={"stage": "run", "args": {"config": PIPELINE}, "mode": "async"}
    )
    assert r.status_code == 202, r.text
    assert r.json() == {"status": "accepted", "job_id": r.json()["job_id"]}
    assert app_client.get(f"/jobs/{r.json()['job_id']}").json()["mode"] == "async"
