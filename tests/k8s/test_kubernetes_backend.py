"""ZYRA_BACKEND=kubernetes against the real control plane; the node agent runs the real runner."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client

from tests.e2e.conftest import ApiServer, start_api, stop_api
from tests.e2e.jobs_client import read_stream, submit, wait_finished, wait_status
from tests.k8s.cluster import ControlPlane
from tests.k8s.node_agent import NodeAgent
from tests.services import RedisServer, S3Server, free_port

MAP = {"no_coastline": True, "no_borders": True, "no_gridlines": True, "width": 120,
       "height": 60}  # fmt: skip


def _secret(core: client.CoreV1Api, namespace: str, name: str, data: dict[str, str]) -> None:
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data),
    )


@pytest.fixture
def k8s_api(
    tmp_path: Path,
    inputs: Path,
    control_plane: ControlPlane,
    node_agent: NodeAgent,
    namespace: str,
    k8s_client: client.ApiClient,
    redis_server: RedisServer,
    s3_server: S3Server,
) -> Iterator[ApiServer]:
    core = client.CoreV1Api(k8s_client)
    redis_url = redis_server.url[:-1] + "5"
    _secret(core, namespace, "zyra-redis", {"url": redis_url})
    _secret(core, namespace, "zyra-s3", {"access-key": s3_server.access_key,
                                          "secret-key": s3_server.secret_key})  # fmt: skip
    env = {
        "ZYRA_BACKEND": "kubernetes",
        "ZYRA_REDIS_URL": redis_url,
        **s3_server.api_env(bucket=f"k8s-{namespace}"),
        "ZYRA_K8S_KUBECONFIG": str(control_plane.kubeconfig),
        "ZYRA_K8S_PULL_FAILURE_TIMEOUT_S": "3",
        "ZYRA_K8S__NAMESPACE": namespace,
        "ZYRA_K8S__IMAGE": "zyra-orchestrator-runner:test",
        "ZYRA_K8S__RUNNER_COMMAND": json.dumps([sys.executable, "-m", "runner"]),
        "ZYRA_K8S__WORK_MOUNT": str(tmp_path / "pod-work"),
        "ZYRA_K8S__DEADLINE_MARGIN_S": "0",
        "ZYRA_K8S__REDIS_URL_SECRET": json.dumps({"name": "zyra-redis", "key": "url"}),
        "ZYRA_K8S__S3_ACCESS_KEY_SECRET": json.dumps({"name": "zyra-s3", "key": "access-key"}),
        "ZYRA_K8S__S3_SECRET_KEY_SECRET": json.dumps({"name": "zyra-s3", "key": "secret-key"}),
    }
    server = start_api(tmp_path, inputs, **env)
    yield server
    stop_api(server)


@pytest.fixture
def api_client(k8s_api: ApiServer) -> Iterator[httpx.Client]:
    with k8s_api.client() as c:
        yield c


def test_async_heatmap_runs_as_a_job_and_its_png_downloads(
    k8s_api: ApiServer,
    api_client: httpx.Client,
    inputs: Path,
    control_plane: ControlPlane,
    namespace: str,
) -> None:
    meta = api_client.post(
        "/upload", files={"file": ("field.npy", (inputs / "field.npy").read_bytes())}
    ).json()
    args = {"input": f"file_id:{meta['file_id']}", "output": "k8s.png", **MAP}
    job_id = submit(api_client, "visualize", "heatmap", args)
    job = wait_finished(api_client, job_id, timeout_s=120)
    assert (job["status"], job["exit_code"], job["reason"]) == ("succeeded", 0, "Completed")
    assert job["stderr"] == "INFO: k8s.png\n"
    png = api_client.get(f"/jobs/{job_id}/download").content
    assert png.startswith(b"\x89PNG")

    listed = control_plane.kubectl("get", "jobs", "-n", namespace, "-l", f"zyra.job-id={job_id}",
                                   "-o", "name")  # fmt: skip
    assert listed.stdout.strip() == f"job.batch/zyra-{job_id}"
    logs = control_plane.kubectl("logs", "-n", namespace, f"job/zyra-{job_id}")
    assert "INFO: k8s.png" in logs.stdout
    messages = read_stream(k8s_api, job_id).messages
    assert messages[0]["status"] == "queued" and messages[-1]["status"] == "succeeded"


def test_exit_code_2_and_stderr_are_reported_and_resources_apply(
    api_client: httpx.Client, k8s_client: client.ApiClient, namespace: str
) -> None:
    args = {"file_or_url": "missing.grib2", "format": "netcdf", "output": "x.nc"}
    job_id = submit(api_client, "process", "convert-format", args,
                    resources={"cpu": "300m", "memory": "768Mi"})  # fmt: skip
    created = client.BatchV1Api(k8s_client).read_namespaced_job(f"zyra-{job_id}", namespace)
    limits = created.spec.template.spec.containers[0].resources.limits
    assert limits == {"cpu": "300m", "memory": "768Mi"}
    job = wait_finished(api_client, job_id, timeout_s=120)
    assert (job["status"], job["exit_code"]) == ("failed", 2)
    assert "Input not found" in job["stderr"]


def test_cancel_deletes_the_job_and_its_pods(
    api_client: httpx.Client, k8s_client: client.ApiClient, namespace: str, silent_server: str
) -> None:
    job_id = submit(api_client, "acquire", "http", {"url": silent_server, "output": "x"})
    wait_status(api_client, job_id, "running", timeout_s=120)
    assert api_client.delete(f"/jobs/{job_id}").json()["cancelled"] is True
    job = wait_finished(api_client, job_id, timeout_s=60)
    assert (job["status"], job["reason"]) == ("cancelled", "Cancelled")
    core, batch = client.CoreV1Api(k8s_client), client.BatchV1Api(k8s_client)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = batch.list_namespaced_job(namespace, label_selector=f"zyra.job-id={job_id}")
        pods = core.list_namespaced_pod(namespace, label_selector=f"zyra.job-id={job_id}")
        if not jobs.items and not pods.items:
            break
        time.sleep(0.5)
    assert not jobs.items and not pods.items


def test_a_deadline_exceeded_is_reported(api_client: httpx.Client, silent_server: str) -> None:
    # With no margin the Job's activeDeadlineSeconds (3 s from the Job's start) passes
    # before the runner's own timer (3 s from the command's start).
    job_id = submit(api_client, "acquire", "http", {"url": silent_server, "output": "x"},
                    timeout_s=3)  # fmt: skip
    job = wait_finished(api_client, job_id, timeout_s=120)
    assert (job["status"], job["reason"]) == ("failed", "DeadlineExceeded")
    assert job["exit_code"] == 143  # the runner ended on the SIGTERM of the pod's deletion


def test_an_image_that_cannot_be_pulled_fails_with_that_reason(
    tmp_path: Path, inputs: Path, k8s_api: ApiServer, node_agent: NodeAgent
) -> None:
    stop_api(k8s_api)
    env = dict(k8s_api.env)
    env["ZYRA_K8S__IMAGE"] = f"registry.invalid/{node_agent.unpullable}:1"
    api = start_api(tmp_path / "again", inputs, **env)
    try:
        with api.client() as c:
            job_id = submit(c, "run", None, {"config": "none.yaml"})
            job = wait_finished(c, job_id, timeout_s=120)
            assert (job["status"], job["reason"]) == ("failed", "ImagePullBackOff")
            assert job["exit_code"] is None
    finally:
        stop_api(api)


def test_outcome_is_recorded_across_an_api_restart(
    tmp_path: Path, inputs: Path, k8s_api: ApiServer, silent_server: str
) -> None:
    with k8s_api.client() as c:
        job_id = submit(c, "acquire", "http", {"url": silent_server, "output": "x"}, timeout_s=4)
        wait_status(c, job_id, "running", timeout_s=120)
    k8s_api.process.kill()  # the pod keeps running without its API
    k8s_api.process.wait()
    # Meanwhile the Job's deadline (4 s, no margin here) passes and the Job controller
    # deletes the pod: nobody is watching.
    time.sleep(4 + 3)
    api = start_api(tmp_path / "restarted", inputs, **k8s_api.env)
    try:
        with api.client() as c:
            job = wait_finished(c, job_id, timeout_s=60)
            assert (job["status"], job["reason"]) == ("failed", "DeadlineExceeded")
    finally:
        stop_api(api)


def test_runner_cut_off_from_redis_still_reports_through_the_pod(
    tmp_path: Path,
    inputs: Path,
    k8s_api: ApiServer,
    k8s_client: client.ApiClient,
    namespace: str,
    records_json: Path,
    silent_server: str,
) -> None:
    """The runner's Redis URL points at a closed port; the API's Redis works."""
    stop_api(k8s_api)
    _secret(client.CoreV1Api(k8s_client), namespace, "zyra-redis-unreachable",
            {"url": f"redis://127.0.0.1:{free_port()}/0"})  # fmt: skip
    env = {
        **k8s_api.env,
        "ZYRA_K8S__REDIS_URL_SECRET": json.dumps({"name": "zyra-redis-unreachable", "key": "url"}),
        "ZYRA_K8S__PLAIN_ENV": json.dumps({"ZYRA_EVENT_FLUSH_WAIT_S": "1"}),
        "ZYRA_K8S_LOG_FALLBACK_AFTER_S": "1",
    }
    # Prints its steps, then waits on a server that never answers until the timeout.
    workflow = inputs / "print-then-wait.yaml"
    workflow.write_text(
        "jobs:\n  build:\n    steps:\n"
        f'      - "process api-json {records_json} --format csv"\n'
        f'      - "acquire http {silent_server} -o never.bin"\n'
    )
    api = start_api(tmp_path / "cut-off", inputs, **env)
    try:
        with api.client() as c:
            job_id = submit(c, "run", None, {"config": str(workflow)}, timeout_s=20)
            wait_status(c, job_id, "running", timeout_s=120)
            head = read_stream(api, job_id, stop_after=4)  # live, while the job waits
            assert c.get(f"/jobs/{job_id}").json()["status"] == "running"
            assert "[job build] step 2/2: acquire http" in head.messages[-1]["stdout"], head
            job = wait_finished(c, job_id, timeout_s=120)
            # No margin here: the Job's deadline passes before the runner's own timeout.
            assert (job["status"], job["reason"]) == ("failed", "DeadlineExceeded")
            assert "[job build] starting (2 steps)" in job["stdout"]
            assert "could not store the result" in job["stdout"]
    finally:
        stop_api(api)


@pytest.fixture
def records_json(inputs: Path) -> Path:
    path = inputs / "small-records.json"
    path.write_text(json.dumps([{"i": i, "name": f"line {i}"} for i in range(20)]))
    return path


def _runner_pid(job_id: str) -> int | None:
    """The runner process of a job: its environment carries the job spec."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if job_id.encode() in environ and cmdline[1:3] == [b"-m", b"runner"]:
            return int(entry.name)
    return None


def test_a_runner_killed_by_a_signal_is_reported_as_such(
    api_client: httpx.Client, silent_server: str
) -> None:
    job_id = submit(api_client, "acquire", "http", {"url": silent_server, "output": "x"})
    wait_status(api_client, job_id, "running", timeout_s=120)
    deadline = time.monotonic() + 30
    while (pid := _runner_pid(job_id)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    job = wait_finished(api_client, job_id, timeout_s=60)
    assert (job["status"], job["exit_code"], job["reason"]) == ("failed", 137, "Signaled")


def test_a_runner_over_its_memory_limit_is_oomkilled(
    api_client: httpx.Client, inputs: Path
) -> None:
    # 200Mi cannot hold the runner and a Zyra command: the node agent kills the group
    # the way the kernel's OOM killer would, and reports OOMKilled.
    args = {"input": str(inputs / "field.npy"), "output": "big.png", **MAP}
    job_id = submit(api_client, "visualize", "heatmap", args, resources={"memory": "200Mi"})
    job = wait_finished(api_client, job_id, timeout_s=120)
    assert (job["status"], job["exit_code"], job["reason"]) == ("failed", 137, "OOMKilled")


def test_two_api_replicas_finalise_a_job_once(
    tmp_path: Path, inputs: Path, k8s_api: ApiServer
) -> None:
    second = start_api(tmp_path / "replica", inputs, **k8s_api.env)
    try:
        with k8s_api.client() as first_client, second.client() as second_client:
            args = {"input": str(inputs / "field.npy"), "output": "twice.png", **MAP}
            job_id = submit(first_client, "visualize", "heatmap", args)
            job = wait_finished(second_client, job_id, timeout_s=120)
            assert (job["status"], job["exit_code"]) == ("succeeded", 0)
            time.sleep(2)  # both watchers have seen the pod end by now
            for api in (k8s_api, second):
                messages = read_stream(api, job_id).messages
                terminal = [m for m in messages if m.get("status") == "succeeded"]
                assert len(terminal) == 1, messages
                assert messages[-1] == terminal[0]
            assert first_client.get(f"/jobs/{job_id}").json() == job
    finally:
        stop_api(second)
