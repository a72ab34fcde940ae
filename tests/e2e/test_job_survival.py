"""Jobs outlive an API restart and a Redis outage."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ApiServer, start_api, stop_api, store_of
from tests.e2e.jobs_client import read_stream, submit, wait_finished, wait_status
from tests.e2e.sync_executor import children
from tests.services import RedisServer


def heatmap(inputs: Path, output: str) -> dict:
    return {"input": str(inputs / "field.npy"), "output": output,
            "no_coastline": True, "no_borders": True, "no_gridlines": True}  # fmt: skip


@pytest.fixture(params=["embedded", "redis"])
def store_env(request: pytest.FixtureRequest, redis_server: RedisServer) -> dict[str, str]:
    return {"ZYRA_REDIS_URL": redis_server.url[:-1] + "2"} if request.param == "redis" else {}


def test_killed_api_restarts_with_finished_jobs_kept_and_orphans_settled(
    tmp_path: Path, inputs: Path, silent_server: str, store_env: dict[str, str]
) -> None:
    api = start_api(tmp_path, inputs, **store_env)
    try:
        with api.client() as client:
            done = submit(client, "render", "heatmap", heatmap(inputs, "kept.png"))
            wait_finished(client, done)
            orphan = submit(client, "acquire", "http", {"url": silent_server, "output": "o"})
            survivor = submit(
                client, "acquire", "http", {"url": silent_server, "output": "s"}, timeout_s=4
            )
            for job_id in (orphan, survivor):
                wait_status(client, job_id, "running")
        api.process.kill()  # no shutdown hooks: as if the pod were evicted
        api.process.wait()
        record = store_of(api.env, api.data_dir).get(orphan)
        assert record is not None and record.runner is not None
        os.killpg(record.runner["pid"], signal.SIGKILL)  # the orphan's runner dies too
        time.sleep(4 + 2 + 1)  # the survivor times out (4 s) and its runner exits
    finally:
        stop_api(api)

    api = start_api(tmp_path, inputs, **store_env)
    try:
        with api.client() as client:
            kept = client.get(f"/jobs/{done}").json()
            assert kept["status"] == "succeeded"
            assert kept["stderr"] == "INFO: kept.png\n"
            assert client.get(f"/jobs/{done}/download").content.startswith(b"\x89PNG")

            lost = wait_finished(client, orphan, timeout_s=30)
            assert (lost["status"], lost["reason"], lost["exit_code"]) == ("failed", "Lost", None)
            stream = read_stream(api, orphan)
            assert stream.messages[-1]["status"] == "failed"
            assert stream.close_code == 1000

            timed_out = wait_finished(client, survivor, timeout_s=30)
            assert (timed_out["status"], timed_out["exit_code"]) == ("failed", 124)
            assert timed_out["reason"] == "Timeout"
    finally:
        stop_api(api)


def test_async_runners_are_forked_warm_and_outlive_their_template_process(
    tmp_path: Path, inputs: Path, silent_server: str
) -> None:
    """A local runner is forked from the API's template process (Zyra already loaded),
    in a session of its own. When the template process dies mid-job, the runner does
    not: its job ends as it would have, from the result it stored."""
    api = start_api(tmp_path, inputs)
    try:
        with api.client() as client:
            job_id = submit(
                client, "acquire", "http", {"url": silent_server, "output": "o"}, timeout_s=3
            )
            wait_status(client, job_id, "running")
            record = store_of(api.env, api.data_dir).get(job_id)
            assert record is not None and record.runner is not None
            runner = record.runner["pid"]
            [template] = children(api.process.pid)
            assert _stat(runner)[:3] == [template, runner, runner]  # parent, group, session
            os.kill(template, signal.SIGKILL)
            ended = wait_finished(client, job_id, timeout_s=30)
            assert (ended["status"], ended["exit_code"], ended["reason"]) == (
                "failed",
                124,
                "Timeout",
            )
            # Sync runs carry on with a new template process.
            again = client.post(
                "/cli/run",
                json={
                    "stage": "render",
                    "command": "heatmap",
                    "args": heatmap(inputs, "after.png"),
                },
            )
            assert again.json()["exit_code"] == 0, again.text
    finally:
        stop_api(api)


def _stat(pid: int) -> list[int]:
    """ppid, process group and session of `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return [int(f) for f in fields[1:4]]


def test_redis_outage_is_503_naming_redis_and_loses_no_job(
    tmp_path: Path, inputs: Path, own_redis: RedisServer
) -> None:
    api: ApiServer = start_api(tmp_path, inputs, ZYRA_REDIS_URL=own_redis.url)
    try:
        with api.client() as client:
            before = submit(client, "render", "heatmap", heatmap(inputs, "b.png"))
            wait_finished(client, before)

            own_redis.stop()
            refused = client.post(
                "/cli/run",
                json={"stage": "render", "command": "heatmap", "mode": "async",
                      "args": {"input": str(inputs / "field.npy"), "output": "x.png"}},
            )  # fmt: skip
            assert refused.status_code == 503
            assert refused.json()["dependency"] == "Redis"
            assert "Redis is unavailable" in refused.json()["detail"]
            assert client.get(f"/jobs/{before}").status_code == 503
            assert httpx.get(f"{api.url}/readyz").status_code == 503
            assert read_stream(api, before).close_code == 1013

            own_redis.start()
            assert httpx.get(f"{api.url}/readyz").status_code == 200
            kept = client.get(f"/jobs/{before}").json()
            assert (kept["status"], kept["stderr"]) == ("succeeded", "INFO: b.png\n")
            after = submit(client, "render", "heatmap", heatmap(inputs, "a.png"))
            assert wait_finished(client, after)["exit_code"] == 0
    finally:
        stop_api(api)


def test_a_runner_rides_out_a_redis_restart(
    tmp_path: Path, inputs: Path, own_redis: RedisServer, silent_server: str
) -> None:
    """Redis forgets ACL users when it restarts: the API re-creates the running job's
    user, so what its runner publishes after the restart still arrives."""
    api = start_api(tmp_path, inputs, ZYRA_REDIS_URL=own_redis.url)
    try:
        with api.client() as client:
            job_id = submit(client, "acquire", "http", {"url": silent_server, "output": "x"},
                            timeout_s=8)  # fmt: skip
            wait_status(client, job_id, "running")
            own_redis.stop()
            own_redis.start()  # its data is back (AOF), its runner's user is not
            job = wait_finished(client, job_id, timeout_s=90)
            # Timeout (not Error) is in the result the runner stored after the restart.
            assert (job["status"], job["exit_code"], job["reason"]) == ("failed", 124, "Timeout")
            messages = read_stream(api, job_id).messages
            assert [m.get("progress") for m in messages if "progress" in m][-3:] == [
                0.9, 0.95, 1.0
            ]  # fmt: skip
            assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
        assert f"re-created the Redis user of job {job_id}" in api.log_path.read_text()
    finally:
        stop_api(api)
