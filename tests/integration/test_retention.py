"""Retention of a whole job, tried as a client would: the real app (in this process),
real runners of the local backend, real Zyra commands, on the embedded stores, on
Redis, and with outputs in MinIO. Time passes by handing the retention sweep a later
`now` (ZYRA_RESULT_TTL_S is at least a minute)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from api.jobs.service import JobService
from api.retention import RetentionCleaner
from api.server import create_app
from api.settings import Settings
from tests.e2e.conftest import LIMITS_OFF
from tests.services import RedisServer, S3Server

KEY = "retention-key"
RESULT_TTL_S, JOB_TTL_S = 60, 3600
TERMINAL = {"succeeded", "failed", "cancelled"}
MAP = {"no_coastline": True, "no_borders": True, "no_gridlines": True, "width": 120, "height": 60}


@dataclass
class App:
    client: TestClient
    service: JobService
    cleaner: RetentionCleaner
    redis_url: str | None


@pytest.fixture(scope="module", params=["embedded", "redis", "redis+s3"])
def app(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    inputs: Path,
    redis_server: RedisServer,
) -> Iterator[App]:
    limits = {name.removeprefix("ZYRA_").lower(): int(v) for name, v in LIMITS_OFF.items()}
    config: dict = dict(api_keys=[f"t:{KEY}"], data_dir=tmp_path_factory.mktemp("retention"),
                        allowed_path_prefixes=[str(inputs)], outbound_allow=["127.0.0.1"],
                        result_ttl_s=RESULT_TTL_S, job_ttl_s=JOB_TTL_S, **limits)  # fmt: skip
    if request.param.startswith("redis"):
        config["redis_url"] = redis_server.url[:-1] + "5"
    with pytest.MonkeyPatch.context() as env:
        if request.param.endswith("s3"):
            s3: S3Server = request.getfixturevalue("s3_server")
            for name, value in s3.credentials().items():
                env.setenv(name, value)
            config |= dict(storage="s3", s3_bucket=f"retention-{uuid.uuid4().hex[:12]}",
                           s3_endpoint_url=s3.url)  # fmt: skip
        with TestClient(create_app(Settings(**config)), headers={"X-API-Key": KEY}) as client:
            state = client.app.state  # type: ignore[attr-defined]
            yield App(client, state.job_service, state.retention, config.get("redis_url"))


def run_async(app: App, stage: str, command: str, args: dict) -> str:
    reply = app.client.post("/cli/run", json={"stage": stage, "command": command,
                                              "args": args, "mode": "async"})  # fmt: skip
    assert reply.status_code == 202, reply.text
    return reply.json()["job_id"]


def finished(app: App, *job_ids: str) -> list[dict]:
    jobs = []
    for job_id in job_ids:
        deadline = time.monotonic() + 120
        while (job := app.client.get(f"/jobs/{job_id}").json())["status"] not in TERMINAL:
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["exit_code"] == 0, (job, app.service.backend.runner_logs(job_id))
        jobs.append(job)
    return jobs


def one_and_two_outputs(app: App, inputs: Path) -> tuple[dict, dict]:
    field = str(inputs / "field.npy")
    single = run_async(app, "visualize", "heatmap", {"input": field, "output": "one.png", **MAP})
    frames = {"inputs": [field, field], "output_dir": "f", "output_names": ["a.png", "b.png"]}
    pair = run_async(app, "visualize", "heatmap", {**frames, **MAP})
    one, two = finished(app, single, pair)
    assert (len(one["outputs"]), len(two["outputs"])) == (1, 2)
    return one, two


def test_downloads_of_expired_outputs_are_410_naming_when_and_the_setting(
    app: App, inputs: Path
) -> None:
    one, two = one_and_two_outputs(app, inputs)
    single, pair = one["job_id"], two["job_id"]
    app.cleaner.run_once(time.time() + RESULT_TTL_S + 1)

    job = app.client.get(f"/jobs/{single}").json()
    expired_at = job["outputs_expired_at"]
    assert expired_at and [o["name"] for o in job["outputs"]] == ["one.png"]
    for url in (f"/jobs/{single}/download", f"/jobs/{pair}/download",
                f"/jobs/{pair}/download?file={two['outputs'][0]['name']}"):  # fmt: skip
        reply = app.client.get(url)
        assert reply.status_code == 410, (url, reply.status_code, reply.text)
        detail = reply.json()["detail"]
        assert "ZYRA_RESULT_TTL_S" in detail and f"{RESULT_TTL_S} s" in detail, detail
    assert expired_at in app.client.get(f"/jobs/{single}/download").json()["detail"]
    # The record and its events are kept until the job's own TTL.
    assert app.client.get(f"/jobs/{single}/events").status_code == 200


def test_after_the_job_ttl_nothing_of_the_job_remains(app: App, inputs: Path) -> None:
    noisy = run_async(app, "process", "api-json",
                      {"file_or_url": str(write_records(inputs)), "format": "csv"})  # fmt: skip
    one, two = one_and_two_outputs(app, inputs)
    jobs = (noisy, one["job_id"], two["job_id"])
    backend = app.service.backend
    logs = [backend.log_path(j) for j in jobs]  # type: ignore[union-attr]
    assert all(p.exists() for p in logs)
    finished_at = max(datetime.fromisoformat(j["finished_at"]).timestamp()
                      for j in finished(app, *jobs))  # fmt: skip

    app.cleaner.run_once(finished_at + JOB_TTL_S - 5)  # not yet
    assert app.client.get(f"/jobs/{noisy}").status_code == 200
    app.cleaner.run_once(finished_at + JOB_TTL_S + 1)

    for job_id in jobs:
        for url in (f"/jobs/{job_id}", f"/jobs/{job_id}/events", f"/jobs/{job_id}/download"):
            assert app.client.get(url).status_code == 404, url
        assert app.service.events.read(job_id) == []
        assert app.service.events.get_result(job_id) is None
        assert app.service.storage.list(f"results/{job_id}/") == []
        assert not backend.spec_path(job_id).exists()  # type: ignore[union-attr]
    assert not any(p.exists() for p in logs)
    listed = {j["job_id"] for j in app.client.get("/jobs", params={"limit": 500}).json()["jobs"]}
    assert not listed & set(jobs)
    if app.redis_url:
        raw = redis.Redis.from_url(app.redis_url)
        assert [k for j in jobs for k in raw.scan_iter(f"zyra:job:{j}:*")] == []


def test_queued_and_running_jobs_are_never_expired(
    app: App, inputs: Path, silent_server: str
) -> None:
    waiting = run_async(app, "acquire", "http", {"url": silent_server, "output": "never"})
    deadline = time.monotonic() + 60
    while app.client.get(f"/jobs/{waiting}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    app.cleaner.run_once(time.time() + 100 * JOB_TTL_S)
    assert app.client.get(f"/jobs/{waiting}").json()["status"] == "running"
    assert app.service.events.read(waiting) != []  # (its SSE stream would follow it)
    assert app.client.delete(f"/jobs/{waiting}").json()["cancelled"]


@pytest.mark.parametrize("app", ["redis"], indirect=True)
def test_redis_event_streams_expire_by_the_job_ttl_not_a_fixed_week(app: App, inputs: Path) -> None:
    assert app.redis_url is not None
    args = {"input": str(inputs / "field.npy"), "output": "t.png", **MAP}
    job_id = run_async(app, "visualize", "heatmap", args)
    finished(app, job_id)
    ttl = redis.Redis.from_url(app.redis_url).ttl(f"zyra:job:{job_id}:events")
    expected = JOB_TTL_S + app.service.settings.async_timeout_max_s
    assert expected - 60 < ttl <= expected


def write_records(inputs: Path) -> Path:
    path = inputs / "retention-records.json"
    if not path.exists():
        path.write_text("[" + ",".join(f'{{"i": {i}, "pad": "{"x" * 200}"}}'
                                       for i in range(20_000)) + "]")  # fmt: skip
    return path
