"""A runner pod confines its command as a sync run does (ZYRA_BACKEND=kubernetes).

The pods run through the real Job controller and are started by the node agent as
local processes, so the runner's own sandbox is what stands between a command and
the pod's secrets: its environment (the job's credentials), PID 1's, a mounted
ServiceAccount token, another job's folder on the node. The operator's shared data
folder (ZYRA_ALLOWED_PATH_PREFIXES) holds symlinks to each: the API's argument checks
let them through; the kernel must not.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ApiServer, start_api, stop_api
from tests.e2e.jobs_client import submit, wait_finished
from tests.k8s.cluster import ControlPlane
from tests.k8s.node_agent import NodeAgent
from tests.services import RedisServer, S3Server

TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@pytest.fixture(scope="module")
def service_account_token() -> Iterator[Path]:
    """Where the kubelet would mount a pod's ServiceAccount token (made here, as the node
    agent mounts no volumes; a real one on this machine is left alone)."""
    made = not TOKEN.exists()
    if made:
        TOKEN.parent.mkdir(parents=True, exist_ok=True)
        TOKEN.write_text("eyJhbGciOiJSUzI1NiJ9.a-service-account-token.signature")
    yield TOKEN
    if made:
        TOKEN.unlink()


@pytest.fixture
def traps(tmp_path: Path, service_account_token: Path) -> dict[str, Path]:
    shared = tmp_path / "shared"
    shared.mkdir()
    work = tmp_path / "pod-work"
    (work / "another-job" / "files").mkdir(parents=True)
    (work / "another-job" / "files" / "result.nc").write_text("another caller's data")
    targets = {
        "own-environ": Path("/proc/self/environ"),
        "pid1-environ": Path("/proc/1/environ"),
        "token": service_account_token,
        "another-job": work / "another-job" / "files" / "result.nc",
    }
    for name, target in targets.items():
        (shared / name).symlink_to(target)
    return {"shared": shared, "work": work}


@pytest.fixture
def api_client(
    tmp_path: Path,
    traps: dict[str, Path],
    control_plane: ControlPlane,
    node_agent: NodeAgent,
    namespace: str,
    redis_server: RedisServer,
    s3_server: S3Server,
) -> Iterator[httpx.Client]:
    server: ApiServer = start_api(
        tmp_path / "api",
        traps["shared"],
        ZYRA_BACKEND="kubernetes",
        ZYRA_REDIS_URL=redis_server.url[:-1] + "6",
        **s3_server.api_env(bucket=f"sandbox-{namespace}"),
        ZYRA_K8S__KUBECONFIG=str(control_plane.kubeconfig),
        ZYRA_K8S__NAMESPACE=namespace,
        ZYRA_K8S__RUNNER_COMMAND=json.dumps([sys.executable, "-m", "runner"]),
        ZYRA_K8S__WORK_MOUNT=str(traps["work"]),
        ZYRA_SANDBOX="required",
    )
    with server.client() as client:
        yield client
    stop_api(server)


def test_a_runner_pods_command_reaches_none_of_the_pods_secrets(
    api_client: httpx.Client, traps: dict[str, Path]
) -> None:
    jobs = {
        name: submit(
            api_client,
            "disseminate",
            "local",
            {"input": str(traps["shared"] / name), "path": "stolen.bin"},
        )
        for name in ("own-environ", "pid1-environ", "token", "another-job")
    }
    for name, job_id in jobs.items():
        job = wait_finished(api_client, job_id, timeout_s=120)
        assert job["status"] == "failed", (name, job)
        assert job["outputs"] == [], name
        assert "Permission denied" in job["stderr"], (name, job["stderr"])
    # The same command on a file it may read works: the jobs failed for what they touched.
    fine = submit(api_client, "disseminate", "local",
                  {"input": str(traps["shared"] / "fine.txt"), "path": "copy.txt"})  # fmt: skip
    job = wait_finished(api_client, fine, timeout_s=120)
    assert job["status"] == "succeeded", job["stderr"]
    assert api_client.get(f"/jobs/{fine}/download").text == "public data\n"


@pytest.fixture(autouse=True)
def _fine_file(traps: dict[str, Path]) -> None:
    (traps["shared"] / "fine.txt").write_text("public data\n")
