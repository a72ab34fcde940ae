"""A runner pod confines its command as a sync run does (ZYRA_BACKEND=kubernetes).

Real runner pods (the runner image on the session's node: uid 10001, no capabilities,
RuntimeDefault seccomp) with ZYRA_SANDBOX=required. The operator's data volume
(ZYRA_ALLOWED_PATH_PREFIXES, mounted into runner pods with ZYRA_K8S__VOLUMES and
ZYRA_K8S__VOLUME_MOUNTS) holds symlinks to what a command must not read; each is
resolved inside the pod: the command's own environment, PID 1's (the runner, holding
the job's credentials), a ServiceAccount token mounted in the pod (the runner Job mounts
none; one is added here, readable by anyone, so only the sandbox stands in the way), and
another job's folder on the node. The API's argument checks let them through; the
kernel must not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client

from tests.e2e.jobs_client import submit, wait_finished, wait_status
from tests.k8s.cluster_api import backend_env, pod_url, start_cluster_api
from tests.k8s.real_cluster import RealCluster
from tests.services import RedisServer, S3Server

pytestmark = pytest.mark.timeout(300, func_only=True)

TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _copy(c: httpx.Client, shared: Path, name: str, target: str) -> str:
    return submit(c, "disseminate", "local", {"input": str(shared / name), "path": target})


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """The data volume: readable by the runner's uid (10001) inside the pod."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o755)
    (folder / "fine.txt").write_text("public data\n")
    (folder / "fine.txt").chmod(0o644)
    targets = {
        "own-environ": "/proc/self/environ",
        "pid1-environ": "/proc/1/environ",
        "token": f"{TOKEN_DIR}/token",
    }
    for name, target in targets.items():
        (folder / name).symlink_to(target)
    return folder


@pytest.fixture
def api_client(
    tmp_path: Path,
    shared: Path,
    cluster: RealCluster,
    runner_image: str,
    namespace: str,
    redis_server: RedisServer,
    s3_server: S3Server,
) -> Iterator[httpx.Client]:
    volumes = [
        {"name": "data", "hostPath": {"path": str(shared), "type": "Directory"}},
        {"name": "token", "projected": {"defaultMode": 0o444, "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}]}},
    ]  # fmt: skip
    mounts = [
        {"name": "data", "mountPath": str(shared), "readOnly": True},
        {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
    ]
    env = backend_env(cluster, tmp_path, namespace, runner_image, redis_server, s3_server,
                      redis_db=6)  # fmt: skip
    server = start_cluster_api(
        cluster,
        tmp_path / "api",
        shared,
        **env,
        ZYRA_SANDBOX="required",
        ZYRA_K8S__VOLUMES=json.dumps(volumes),
        ZYRA_K8S__VOLUME_MOUNTS=json.dumps(mounts),
    )
    with server.client() as c:
        yield c
    server.stop()


def _work_folder_on_the_node(cluster: RealCluster, k8s_client: client.ApiClient, job_id: str,
                             namespace: str) -> Path:  # fmt: skip
    """A running job's folder in its pod's work emptyDir, where the kubelet keeps it."""
    core = client.CoreV1Api(k8s_client)
    [pod] = core.list_namespaced_pod(namespace, label_selector=f"zyra.job-id={job_id}").items
    volumes = cluster.folder / "kubelet" / "root" / "pods" / pod.metadata.uid / "volumes"
    folder = volumes / "kubernetes.io~empty-dir" / "work" / job_id
    # `running` may be reported just before the runner has made its folder.
    deadline = time.monotonic() + 30
    while not folder.is_dir():
        assert time.monotonic() < deadline, sorted(str(p) for p in volumes.rglob("*"))
        time.sleep(0.2)
    return folder


def test_a_runner_pods_command_reaches_none_of_the_pods_secrets(
    api_client: httpx.Client,
    shared: Path,
    cluster: RealCluster,
    k8s_client: client.ApiClient,
    namespace: str,
    silent_server: str,
) -> None:
    # Another job, waiting on a server that never answers: its folder is on the node.
    waiting = submit(api_client, "acquire", "http",
                     {"url": pod_url(cluster, silent_server), "output": "x"})  # fmt: skip
    wait_status(api_client, waiting, "running", timeout_s=120)
    other = _work_folder_on_the_node(cluster, k8s_client, waiting, namespace)
    (shared / "another-job").symlink_to(other)

    jobs = {
        name: _copy(api_client, shared, name, "stolen.bin")
        for name in ("own-environ", "pid1-environ", "token", "another-job")
    }
    for name, job_id in jobs.items():
        job = wait_finished(api_client, job_id, timeout_s=120)
        assert job["status"] == "failed", (name, job)
        assert job["outputs"] == [], name
        if name == "another-job":
            # Not even there: a pod sees its own volumes, not the node's folders.
            assert "Permission denied" not in job["stderr"], job["stderr"]
            assert "No such file" in job["stderr"] or "not found" in job["stderr"], job["stderr"]
        else:
            assert "Permission denied" in job["stderr"], (name, job["stderr"])
    assert api_client.delete(f"/jobs/{waiting}").json()["cancelled"] is True
    # The same command on a file it may read works: the jobs failed for what they touched.
    fine = _copy(api_client, shared, "fine.txt", "copy.txt")
    job = wait_finished(api_client, fine, timeout_s=120)
    assert job["status"] == "succeeded", job["stderr"]
    assert api_client.get(f"/jobs/{fine}/download").text == "public data\n"
