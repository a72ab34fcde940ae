"""ZYRA_BACKEND=kubernetes against the real control plane; the node agent runs the real runner."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from kubernetes import client

from runner.credentials import CREDENTIALS_ENV, JobCredentials
from tests.e2e.conftest import ApiServer, start_api, stop_api
from tests.e2e.jobs_client import read_stream, submit, wait_finished, wait_status
from tests.k8s.cluster import ControlPlane
from tests.k8s.node_agent import NodeAgent
from tests.services import RedisServer, S3Server

# A valid pipeline, for jobs that never get to run it.
NEVER_RUNS = {"stages": [{"stage": "visualize", "command": "heatmap",
                          "args": {"input": "field.npy", "output": "map.png"}}]}  # fmt: skip

MAP = {"no_coastline": True, "no_borders": True, "no_gridlines": True, "width": 120,
       "height": 60}  # fmt: skip


@pytest.fixture
def k8s_api(
    tmp_path: Path,
    inputs: Path,
    control_plane: ControlPlane,
    node_agent: NodeAgent,
    namespace: str,
    redis_server: RedisServer,
    s3_server: S3Server,
) -> Iterator[ApiServer]:
    redis_url = redis_server.url[:-1] + "5"
    env = {
        "ZYRA_BACKEND": "kubernetes",
        "ZYRA_REDIS_URL": redis_url,
        **s3_server.api_env(bucket=f"k8s-{namespace}"),
        "ZYRA_K8S__KUBECONFIG": str(control_plane.kubeconfig),
        "ZYRA_K8S__PULL_FAILURE_TIMEOUT_S": "3",
        "ZYRA_K8S__NAMESPACE": namespace,
        "ZYRA_K8S__IMAGE": "zyra-orchestrator-runner:test",
        "ZYRA_K8S__RUNNER_COMMAND": json.dumps([sys.executable, "-m", "runner"]),
        "ZYRA_K8S__WORK_MOUNT": str(tmp_path / "pod-work"),
        "ZYRA_K8S__DEADLINE_MARGIN_S": "0",
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
            job_id = submit(c, "run", None, {"config": NEVER_RUNS})
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
    redis_server: RedisServer,
    silent_server: str,
) -> None:
    """Redis refuses the runner (its user is disabled before the pod starts), as if it
    were out of the runner's reach; the API's Redis works."""
    stop_api(k8s_api)
    env = {
        **k8s_api.env,
        "ZYRA_K8S__PLAIN_ENV": json.dumps({"ZYRA_EVENT_FLUSH_WAIT_S": "1"}),
        "ZYRA_K8S__LOG_FALLBACK_AFTER_S": "1",
    }
    # Traces its stage, then waits on a server that never answers until the timeout.
    fetch = {"stage": "acquire", "command": "http",
             "args": {"url": silent_server, "output": "never.bin"}}  # fmt: skip
    api = start_api(tmp_path / "cut-off", inputs, **env)
    try:
        with api.client() as c:
            job_id = submit(
                c, "run", None, {"config": {"stages": [fetch]}, "trace": True}, timeout_s=20
            )
            # The user exists once the run is accepted; its pod starts later.
            admin = redis.Redis.from_url(redis_server.url)
            admin.execute_command("ACL", "SETUSER", f"zyra-job-{job_id}", "off")
            wait_status(c, job_id, "running", timeout_s=120)
            _messages_until(api, job_id, "+ http get")  # live, while the job waits
            assert c.get(f"/jobs/{job_id}").json()["status"] == "running"
            job = wait_finished(c, job_id, timeout_s=120)
            # No margin here: the Job's deadline passes before the runner's own timeout.
            assert (job["status"], job["reason"]) == ("failed", "DeadlineExceeded")
            assert "+ http get" in job["stdout"]
            assert "could not store the result" in job["stdout"]
    finally:
        stop_api(api)


def _messages_until(api: ApiServer, job_id: str, text: str) -> list[dict]:
    """A job's stream up to the first message whose stdout holds `text` (waits for it)."""
    messages: list[dict] = []
    for count in range(1, 100):
        messages = read_stream(api, job_id, stop_after=count).messages
        if text in messages[-1].get("stdout", ""):
            return messages
    raise AssertionError(f"{text!r} never came: {messages}")


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
    # 100Mi cannot hold the runner and a Zyra command (a heatmap peaks near 150Mi): the
    # node agent kills the group the way the kernel's OOM killer would, and reports
    # OOMKilled.
    args = {"input": str(inputs / "field.npy"), "output": "big.png", **MAP}
    job_id = submit(api_client, "visualize", "heatmap", args, resources={"memory": "100Mi"})
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


def _job_users(server: RedisServer) -> set[str]:
    users = redis.Redis.from_url(server.url).execute_command("ACL", "USERS")
    return {u.decode() for u in users if u.startswith(b"zyra-job-")}


def test_a_runner_pod_holds_only_its_own_jobs_credentials(
    api_client: httpx.Client,
    k8s_client: client.ApiClient,
    namespace: str,
    redis_server: RedisServer,
    s3_server: S3Server,
    silent_server: str,
) -> None:
    job_id = submit(api_client, "acquire", "http", {"url": silent_server, "output": "x"})
    wait_status(api_client, job_id, "running", timeout_s=120)
    core, batch = client.CoreV1Api(k8s_client), client.BatchV1Api(k8s_client)
    job = batch.read_namespaced_job(f"zyra-{job_id}", namespace)
    [container] = job.spec.template.spec.containers
    env = {e.name: e for e in container.env}
    assert not [name for name in env if name.startswith("AWS_") or name == "ZYRA_REDIS_URL"]
    ref = env[CREDENTIALS_ENV].value_from.secret_key_ref
    assert (ref.name, ref.key) == (f"zyra-{job_id}", "credentials")
    secret = core.read_namespaced_secret(f"zyra-{job_id}", namespace)
    [owner] = secret.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("Job", f"zyra-{job_id}", job.metadata.uid)

    deadline = time.monotonic() + 30
    while (pid := _runner_pid(job_id)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pid is not None
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode()
    assert s3_server.secret_key not in environ
    assert "AWS_" not in environ and "ZYRA_REDIS_URL=" not in environ
    line = next(v for v in environ.split("\0") if v.startswith(CREDENTIALS_ENV + "="))
    credentials = JobCredentials.model_validate_json(line.split("=", 1)[1])
    assert credentials.redis_url and f"zyra-job-{job_id}:" in credentials.redis_url
    assert f"zyra-job-{job_id}" in _job_users(redis_server)

    assert api_client.delete(f"/jobs/{job_id}").json()["cancelled"] is True
    assert wait_finished(api_client, job_id, timeout_s=60)["status"] == "cancelled"
    deadline = time.monotonic() + 10
    while f"zyra-job-{job_id}" in _job_users(redis_server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"zyra-job-{job_id}" not in _job_users(redis_server)
    with pytest.raises(client.ApiException) as gone:
        core.read_namespaced_secret(f"zyra-{job_id}", namespace)
    assert gone.value.status == 404


def test_jobs_over_a_principals_cap_become_jobs_only_when_it_has_room(
    tmp_path: Path,
    inputs: Path,
    k8s_api: ApiServer,
    k8s_client: client.ApiClient,
    namespace: str,
    silent_server: str,
) -> None:
    stop_api(k8s_api)
    name = f"bob-{uuid.uuid4().hex[:8]}"  # a queue of its own in the shared Redis
    env = {**k8s_api.env, "ZYRA_API_KEYS": f"{name}:{name}-key",
           "ZYRA_MAX_RUNNING_JOBS_PER_PRINCIPAL": "1"}  # fmt: skip
    batch = client.BatchV1Api(k8s_client)

    def created(job_id: str) -> bool:
        selector = f"zyra.job-id={job_id}"
        return bool(batch.list_namespaced_job(namespace, label_selector=selector).items)

    api = start_api(tmp_path / "capped", inputs, **env)
    try:
        with api.client(f"{name}-key") as c:
            fetch = {"url": silent_server, "output": "x"}
            first = submit(c, "acquire", "http", fetch, timeout_s=300)
            second = submit(c, "acquire", "http", fetch, timeout_s=300)
            assert created(first) and not created(second)
            wait_status(c, first, "running", timeout_s=120)
            assert c.get(f"/jobs/{second}").json()["status"] == "queued"
            assert not created(second)

            assert c.delete(f"/jobs/{first}").json()["cancelled"] is True
            assert wait_finished(c, first, timeout_s=60)["status"] == "cancelled"
            wait_status(c, second, "running", timeout_s=120)
            assert created(second)
            assert c.delete(f"/jobs/{second}").json()["cancelled"] is True
            assert wait_finished(c, second, timeout_s=60)["status"] == "cancelled"
    finally:
        stop_api(api)


def test_a_job_the_cluster_refuses_fails_at_once_and_holds_no_queue(
    tmp_path: Path, inputs: Path, k8s_api: ApiServer, silent_server: str
) -> None:
    """A runner setting the API server finds invalid (a node selector key with a space):
    each job fails saying why, instead of waiting in its principal's queue for ever."""
    stop_api(k8s_api)
    name = f"carol-{uuid.uuid4().hex[:8]}"
    env = {**k8s_api.env, "ZYRA_API_KEYS": f"{name}:{name}-key",
           "ZYRA_MAX_RUNNING_JOBS_PER_PRINCIPAL": "1",
           "ZYRA_K8S__NODE_SELECTOR": json.dumps({"not a label key": "x"})}  # fmt: skip
    api = start_api(tmp_path / "refused", inputs, **env)
    try:
        with api.client(f"{name}-key") as c:
            fetch = {"url": silent_server, "output": "x"}
            jobs = [submit(c, "acquire", "http", fetch, timeout_s=60) for _ in range(2)]
            for job_id in jobs:  # the second is not held behind the first
                job = wait_finished(c, job_id, timeout_s=30)
                assert (job["status"], job["reason"], job["exit_code"]) == (
                    "failed", "LaunchFailed", None)  # fmt: skip
                assert "Kubernetes refused the Job: Unprocessable Entity" in job["stderr"]
                assert "nodeSelector" in job["stderr"]
    finally:
        stop_api(api)


def test_a_spec_too_long_for_a_pod_environment_fails_saying_so(
    k8s_api: ApiServer, silent_server: str
) -> None:
    """A runner pod gets its spec in an environment variable, which Linux caps at 128 KiB:
    such a job fails at once with LaunchFailed and the reason, rather than a pod that
    never starts."""
    with k8s_api.client() as c:
        long_url = f"{silent_server}?pad={'a' * 200_000}"
        job_id = submit(c, "acquire", "http", {"url": long_url, "output": "x"}, timeout_s=60)
        job = wait_finished(c, job_id, timeout_s=30)
    assert (job["status"], job["reason"], job["exit_code"]) == ("failed", "LaunchFailed", None)
    assert "a runner pod's environment carries at most 128 KiB" in job["stderr"]
