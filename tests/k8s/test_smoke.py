"""Smoke tests: the real Job controller, API server and kubelet run pods of the runner
image (its Python: `python -c`) on the session's node."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client

from tests.k8s.real_cluster import RealCluster

T = TypeVar("T")

pytestmark = pytest.mark.timeout(300, func_only=True)


def wait_for(check: Callable[[], T | None], timeout: float = 60, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def make_job(name: str, image: str, command: list[str], **spec: Any) -> client.V1Job:
    return client.V1Job.from_dict({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, **spec, "template": {"spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image, "command": command}],
        }}},
    })  # fmt: skip


def job_condition(batch: client.BatchV1Api, namespace: str, name: str, kind: str) -> Any:
    job = batch.read_namespaced_job_status(name, namespace)
    for cond in (job.status and job.status.conditions) or []:
        if cond.type == kind and cond.status == "True":
            return cond
    return None


def job_pod(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod:
    pods = core.list_namespaced_pod(
        namespace, label_selector=f"batch.kubernetes.io/job-name={name}"
    ).items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def host_pids(marker: str) -> list[int]:
    """Processes on this machine (containers included) whose command line holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_failing_job_exit_code_and_logs(
    cluster: RealCluster, runner_image: str, k8s_client: client.ApiClient, namespace: str
) -> None:
    batch, core = client.BatchV1Api(k8s_client), client.CoreV1Api(k8s_client)
    code = "import sys; print('hello from the pod'); sys.exit(3)"
    job = make_job("exit-three", runner_image, ["python", "-c", code])
    batch.create_namespaced_job(namespace, job)

    failed = wait_for(
        lambda: job_condition(batch, namespace, "exit-three", "Failed"), what="Failed"
    )
    assert failed.reason == "BackoffLimitExceeded"

    pod = job_pod(core, namespace, "exit-three")
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert core.read_namespaced_pod_log(pod.metadata.name, namespace) == "hello from the pod\n"

    kubectl = cluster.kubectl("logs", "-n", namespace, "job/exit-three")
    assert kubectl.returncode == 0, kubectl.stderr
    assert kubectl.stdout == "hello from the pod\n"


def test_active_deadline_kills_the_process(
    runner_image: str, k8s_client: client.ApiClient, namespace: str
) -> None:
    batch, core = client.BatchV1Api(k8s_client), client.CoreV1Api(k8s_client)
    marker = f"deadline-{uuid.uuid4().hex}"  # finds the container's process on this machine
    code = f"import time; print('{marker}', flush=True); time.sleep(120)"
    job = make_job("deadline", runner_image, ["python", "-c", code], activeDeadlineSeconds=5)
    batch.create_namespaced_job(namespace, job)

    def pids() -> list[int] | None:
        pods = core.list_namespaced_pod(
            namespace, label_selector="batch.kubernetes.io/job-name=deadline"
        ).items
        if not pods or pods[0].status.phase != "Running":
            return None
        text = core.read_namespaced_pod_log(pods[0].metadata.name, namespace)
        return host_pids(marker) if marker in text else None

    [process_id] = wait_for(pids, what="the pod's process to start")
    failed = wait_for(lambda: job_condition(batch, namespace, "deadline", "Failed"), what="Failed")
    assert failed.reason == "DeadlineExceeded"

    def pod_gone() -> bool:
        selector = "batch.kubernetes.io/job-name=deadline"
        return not core.list_namespaced_pod(namespace, label_selector=selector).items

    # The Job controller deleted the pod; the kubelet killed the container first.
    wait_for(pod_gone, what="the pod object to be removed")
    assert not Path(f"/proc/{process_id}").exists()


def test_follow_streams_until_the_container_exits(
    cluster: RealCluster, runner_image: str, k8s_client: client.ApiClient, namespace: str
) -> None:
    batch, core = client.BatchV1Api(k8s_client), client.CoreV1Api(k8s_client)
    code = "import time\nfor i in range(5):\n    print('line', i, flush=True); time.sleep(0.3)"
    batch.create_namespaced_job(namespace, make_job("follow", runner_image, ["python", "-c", code]))

    def running_pod() -> str | None:
        pods = core.list_namespaced_pod(
            namespace, label_selector="batch.kubernetes.io/job-name=follow"
        ).items
        return pods[0].metadata.name if pods and pods[0].status.phase == "Running" else None

    pod = wait_for(running_pod, what="a running pod")
    stream = core.read_namespaced_pod_log(pod, namespace, follow=True, _preload_content=False)
    started = time.monotonic()
    text = b"".join(stream.stream()).decode()
    assert text == "".join(f"line {i}\n" for i in range(5))
    assert time.monotonic() - started < 10  # the stream ended when the process did

    kubectl = cluster.kubectl("logs", "-f", "--timestamps", "-n", namespace, pod)
    assert kubectl.returncode == 0, kubectl.stderr
    assert [line.split(" ", 1)[1] for line in kubectl.stdout.splitlines()] == [
        f"line {i}" for i in range(5)
    ]
    wait_for(lambda: job_condition(batch, namespace, "follow", "Complete"), what="Complete")


def test_env_from_secret_and_unpullable_image(
    runner_image: str, k8s_client: client.ApiClient, namespace: str
) -> None:
    batch, core = client.BatchV1Api(k8s_client), client.CoreV1Api(k8s_client)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="creds"), string_data={"token": "s3cr3t"}
        ),
    )
    code = "import os, sys; print(os.environ['TOKEN'], *sys.argv[1:])"
    job = make_job("env", runner_image, ["python", "-c", code])
    container = job.spec.template.spec.containers[0]
    container.args = ["$(PLAIN)", "--x"]
    container.env = [
        client.V1EnvVar(name="PLAIN", value="plain-value"),
        client.V1EnvVar(
            name="TOKEN",
            value_from=client.V1EnvVarSource(
                secret_key_ref=client.V1SecretKeySelector(name="creds", key="token")
            ),
        ),
    ]
    batch.create_namespaced_job(namespace, job)
    wait_for(lambda: job_condition(batch, namespace, "env", "Complete"), what="Complete")
    pod = job_pod(core, namespace, "env")
    assert pod.status.container_statuses[0].state.terminated.reason == "Completed"
    assert core.read_namespaced_pod_log(pod.metadata.name, namespace) == "s3cr3t plain-value --x\n"

    # A registry that does not exist (.invalid): the kubelet really tries, fails
    # (ErrImagePull), then backs off.
    bad = make_job("bad-image", "registry.invalid/does-not-exist:1", ["python", "-c", "pass"])
    batch.create_namespaced_job(namespace, bad)

    def waiting_reason() -> str | None:
        pods = core.list_namespaced_pod(
            namespace, label_selector="batch.kubernetes.io/job-name=bad-image"
        ).items
        statuses = pods[0].status.container_statuses if pods else None
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.reason if waiting and waiting.reason == "ImagePullBackOff" else None

    wait_for(waiting_reason, what="ImagePullBackOff")
    waiting_pod = job_pod(core, namespace, "bad-image").metadata.name
    with pytest.raises(client.ApiException) as refused:
        core.read_namespaced_pod_log(waiting_pod, namespace)
    assert refused.value.status == 400
    assert "trying and failing to pull image" in str(refused.value.body)
    # Deleting the Job (foreground) goes through the garbage collector and the kubelet.
    batch.delete_namespaced_job(
        "bad-image", namespace, body=client.V1DeleteOptions(propagation_policy="Foreground")
    )

    def all_gone() -> bool:
        pods = core.list_namespaced_pod(
            namespace, label_selector="batch.kubernetes.io/job-name=bad-image"
        ).items
        return not pods

    wait_for(all_gone, what="the pod to be deleted")
