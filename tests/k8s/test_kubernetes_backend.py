"""ZYRA_BACKEND=kubernetes on the session's cluster: runner Jobs run the runner image in
real pods on a real node (kubelet, containerd, runc). The API runs inside the cluster's
namespaces (tests/k8s/cluster_api.py), so it and the runner pods reach the same Redis
and MinIO at the node IP; tests' loopback servers are reached there too (`pod_url`)."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from kubernetes import client

from runner.credentials import CREDENTIALS_ENV, JobCredentials
from tests.e2e.jobs_client import read_stream, submit, wait_finished, wait_status
from tests.k8s.cluster_api import ClusterApi, backend_env, pod_url, start_cluster_api
from tests.k8s.real_cluster import RealCluster
from tests.services import RedisServer, S3Server

pytestmark = pytest.mark.timeout(300, func_only=True)

# A valid pipeline, for jobs that never get to run it.
NEVER_RUNS = {"stages": [{"stage": "visualize", "command": "heatmap",
                          "args": {"input": "field.npy", "output": "map.png"}}]}  # fmt: skip

MAP = {"no_coastline": True, "no_borders": True, "no_gridlines": True, "width": 120,
       "height": 60}  # fmt: skip


@pytest.fixture
def k8s_api(
    tmp_path: Path,
    inputs: Path,
    cluster: RealCluster,
    runner_image: str,
    namespace: str,
    redis_server: RedisServer,
    s3_server: S3Server,
) -> Iterator[ClusterApi]:
    env = backend_env(cluster, tmp_path, namespace, runner_image, redis_server, s3_server,
                      redis_db=5)  # fmt: skip
    env |= {"ZYRA_K8S__PULL_FAILURE_TIMEOUT_S": "3", "ZYRA_K8S__DEADLINE_MARGIN_S": "0"}
    server = start_cluster_api(cluster, tmp_path, inputs, **env)
    yield server
    server.stop()


@pytest.fixture
def api_client(k8s_api: ClusterApi) -> Iterator[httpx.Client]:
    with k8s_api.client() as c:
        yield c


@pytest.fixture
def silent_url(cluster: RealCluster, silent_server: str) -> str:
    """`silent_server` where runner pods reach it."""
    return pod_url(cluster, silent_server)


def upload(c: httpx.Client, path: Path) -> str:
    """An input as a runner pod gets it: uploaded, then fetched with a presigned URL."""
    meta = c.post("/upload", files={"file": (path.name, path.read_bytes())}).json()
    return f"file_id:{meta['file_id']}"


def test_async_heatmap_runs_as_a_job_and_its_png_downloads(
    k8s_api: ClusterApi,
    api_client: httpx.Client,
    inputs: Path,
    cluster: RealCluster,
    namespace: str,
) -> None:
    args = {"input": upload(api_client, inputs / "field.npy"), "output": "k8s.png", **MAP}
    job_id = submit(api_client, "visualize", "heatmap", args)
    job = wait_finished(api_client, job_id, timeout_s=120)
    assert (job["status"], job["exit_code"], job["reason"]) == ("succeeded", 0, "Completed")
    assert job["stderr"] == "INFO: k8s.png\n"
    png = api_client.get(f"/jobs/{job_id}/download").content
    assert png.startswith(b"\x89PNG")

    listed = cluster.kubectl("get", "jobs", "-n", namespace, "-l", f"zyra.job-id={job_id}",
                             "-o", "name")  # fmt: skip
    assert listed.stdout.strip() == f"job.batch/zyra-{job_id}"
    logs = cluster.kubectl("logs", "-n", namespace, f"job/zyra-{job_id}")
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
    api_client: httpx.Client, k8s_client: client.ApiClient, namespace: str, silent_url: str
) -> None:
    job_id = submit(api_client, "acquire", "http", {"url": silent_url, "output": "x"})
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


def test_a_deadline_exceeded_is_reported(api_client: httpx.Client, silent_url: str) -> None:
    # With no margin the Job's activeDeadlineSeconds (5 s from the Job's start) passes
    # before the runner's own timer (5 s from the command's start). 5 s, not less: the
    # runner must have started (and set its SIGTERM handler) by then.
    job_id = submit(api_client, "acquire", "http", {"url": silent_url, "output": "x"},
                    timeout_s=5)  # fmt: skip
    job = wait_finished(api_client, job_id, timeout_s=120)
    assert (job["status"], job["reason"]) == ("failed", "DeadlineExceeded")
    assert job["exit_code"] == 143  # the runner ended on the SIGTERM of the pod's deletion


def test_an_image_that_cannot_be_pulled_fails_with_that_reason(
    tmp_path: Path, inputs: Path, cluster: RealCluster, k8s_api: ClusterApi
) -> None:
    k8s_api.stop()
    env = dict(k8s_api.env)
    # A registry that does not exist (.invalid): the kubelet tries, fails and backs off.
    env["ZYRA_K8S__IMAGE"] = "registry.invalid/does-not-exist:1"
    api = start_cluster_api(cluster, tmp_path / "again", inputs, **env)
    try:
        with api.client() as c:
            job_id = submit(c, "run", None, {"config": NEVER_RUNS})
            job = wait_finished(c, job_id, timeout_s=120)
            # The first waiting reason that lasts the pull-failure timeout (3 s here):
            # the kubelet's ErrImagePull, or ImagePullBackOff once it backs off.
            assert job["status"] == "failed"
            assert job["reason"] in ("ErrImagePull", "ImagePullBackOff"), job
            assert job["exit_code"] is None
    finally:
        api.stop()


def test_outcome_is_recorded_across_an_api_restart(
    tmp_path: Path,
    inputs: Path,
    cluster: RealCluster,
    k8s_api: ClusterApi,
    k8s_client: client.ApiClient,
    namespace: str,
    silent_url: str,
) -> None:
    with k8s_api.client() as c:
        job_id = submit(c, "acquire", "http", {"url": silent_url, "output": "x"}, timeout_s=5)
        wait_status(c, job_id, "running", timeout_s=120)
    k8s_api.kill()  # the pod keeps running without its API
    # Meanwhile the Job's deadline (5 s, no margin here) passes and the Job controller
    # deletes the pod: nobody is watching.
    batch = client.BatchV1Api(k8s_client)
    deadline = time.monotonic() + 60
    while not _job_failed(batch.read_namespaced_job(f"zyra-{job_id}", namespace)):
        assert time.monotonic() < deadline, cluster.describe_all(namespace)
        time.sleep(0.2)
    api = start_cluster_api(cluster, tmp_path / "restarted", inputs, **k8s_api.env)
    try:
        with api.client() as c:
            job = wait_finished(c, job_id, timeout_s=60)
            assert (job["status"], job["reason"]) == ("failed", "DeadlineExceeded")
    finally:
        api.stop()


def _job_failed(job: client.V1Job) -> bool:
    conditions = (job.status and job.status.conditions) or []
    return any(c.type == "Failed" and c.status == "True" for c in conditions)


def test_runner_cut_off_from_redis_still_reports_through_the_pod(
    tmp_path: Path,
    inputs: Path,
    cluster: RealCluster,
    k8s_api: ClusterApi,
    redis_server: RedisServer,
    silent_url: str,
) -> None:
    """Redis refuses the runner (its user is disabled before the pod starts), as if it
    were out of the runner's reach; the API's Redis works."""
    k8s_api.stop()
    env = {
        **k8s_api.env,
        "ZYRA_K8S__PLAIN_ENV": json.dumps({"ZYRA_EVENT_FLUSH_WAIT_S": "1"}),
        "ZYRA_K8S__LOG_FALLBACK_AFTER_S": "1",
    }
    # Traces its stage, then waits on a server that never answers until the timeout.
    fetch = {"stage": "acquire", "command": "http",
             "args": {"url": silent_url, "output": "never.bin"}}  # fmt: skip
    api = start_cluster_api(cluster, tmp_path / "cut-off", inputs, **env)
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
        api.stop()


def _messages_until(api: ClusterApi, job_id: str, text: str) -> list[dict]:
    """A job's stream up to the first message whose stdout holds `text` (waits for it)."""
    messages: list[dict] = []
    for count in range(1, 100):
        messages = read_stream(api, job_id, stop_after=count).messages
        if text in messages[-1].get("stdout", ""):
            return messages
    raise AssertionError(f"{text!r} never came: {messages}")


def _runner_pid(job_id: str) -> int | None:
    """The runner process of a job (PID 1 of its pod's container, seen from this
    machine): its environment carries the job spec."""
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
    api_client: httpx.Client, silent_url: str
) -> None:
    job_id = submit(api_client, "acquire", "http", {"url": silent_url, "output": "x"})
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
    # kernel's OOM killer ends it in the pod's memory cgroup, and the kubelet says so.
    args = {"input": upload(api_client, inputs / "field.npy"), "output": "big.png", **MAP}
    job_id = submit(api_client, "visualize", "heatmap", args, resources={"memory": "100Mi"})
    job = wait_finished(api_client, job_id, timeout_s=120)
    assert (job["status"], job["exit_code"], job["reason"]) == ("failed", 137, "OOMKilled")


def test_two_api_replicas_finalise_a_job_once(
    tmp_path: Path, inputs: Path, cluster: RealCluster, k8s_api: ClusterApi
) -> None:
    second = start_cluster_api(cluster, tmp_path / "replica", inputs, **k8s_api.env)
    try:
        with k8s_api.client() as first_client, second.client() as second_client:
            field = upload(first_client, inputs / "field.npy")
            args = {"input": field, "output": "twice.png", **MAP}
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
        second.stop()


def _job_users(server: RedisServer) -> set[str]:
    users = redis.Redis.from_url(server.url).execute_command("ACL", "USERS")
    return {u.decode() for u in users if u.startswith(b"zyra-job-")}


def test_a_runner_pod_holds_only_its_own_jobs_credentials(
    api_client: httpx.Client,
    k8s_client: client.ApiClient,
    namespace: str,
    redis_server: RedisServer,
    s3_server: S3Server,
    silent_url: str,
) -> None:
    job_id = submit(api_client, "acquire", "http", {"url": silent_url, "output": "x"})
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
    cluster: RealCluster,
    k8s_api: ClusterApi,
    k8s_client: client.ApiClient,
    namespace: str,
    silent_url: str,
) -> None:
    k8s_api.stop()
    name = f"bob-{uuid.uuid4().hex[:8]}"  # a queue of its own in the shared Redis
    env = {**k8s_api.env, "ZYRA_API_KEYS": f"{name}:{name}-key",
           "ZYRA_MAX_RUNNING_JOBS_PER_PRINCIPAL": "1"}  # fmt: skip
    batch = client.BatchV1Api(k8s_client)

    def created(job_id: str) -> bool:
        selector = f"zyra.job-id={job_id}"
        return bool(batch.list_namespaced_job(namespace, label_selector=selector).items)

    api = start_cluster_api(cluster, tmp_path / "capped", inputs, **env)
    try:
        with api.client(f"{name}-key") as c:
            fetch = {"url": silent_url, "output": "x"}
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
        api.stop()


def test_a_job_the_cluster_refuses_fails_at_once_and_holds_no_queue(
    tmp_path: Path, inputs: Path, cluster: RealCluster, k8s_api: ClusterApi, silent_url: str
) -> None:
    """A runner setting the API server finds invalid (a node selector key with a space):
    each job fails saying why, instead of waiting in its principal's queue for ever."""
    k8s_api.stop()
    name = f"carol-{uuid.uuid4().hex[:8]}"
    env = {**k8s_api.env, "ZYRA_API_KEYS": f"{name}:{name}-key",
           "ZYRA_MAX_RUNNING_JOBS_PER_PRINCIPAL": "1",
           "ZYRA_K8S__NODE_SELECTOR": json.dumps({"not a label key": "x"})}  # fmt: skip
    api = start_cluster_api(cluster, tmp_path / "refused", inputs, **env)
    try:
        with api.client(f"{name}-key") as c:
            fetch = {"url": silent_url, "output": "x"}
            jobs = [submit(c, "acquire", "http", fetch, timeout_s=60) for _ in range(2)]
            for job_id in jobs:  # the second is not held behind the first
                job = wait_finished(c, job_id, timeout_s=30)
                assert (job["status"], job["reason"], job["exit_code"]) == (
                    "failed", "LaunchFailed", None)  # fmt: skip
                assert "Kubernetes refused the Job: Unprocessable Entity" in job["stderr"]
                assert "nodeSelector" in job["stderr"]
    finally:
        api.stop()


def test_a_spec_too_long_for_a_pod_environment_fails_saying_so(
    k8s_api: ClusterApi, silent_url: str
) -> None:
    """A runner pod gets its spec in an environment variable, which Linux caps at 128 KiB:
    such a job fails at once with LaunchFailed and the reason, rather than a pod that
    never starts."""
    with k8s_api.client() as c:
        long_url = f"{silent_url}?pad={'a' * 200_000}"
        job_id = submit(c, "acquire", "http", {"url": long_url, "output": "x"}, timeout_s=60)
        job = wait_finished(c, job_id, timeout_s=30)
    assert (job["status"], job["reason"], job["exit_code"]) == ("failed", "LaunchFailed", None)
    assert "a runner pod's environment carries at most 128 KiB" in job["stderr"]
