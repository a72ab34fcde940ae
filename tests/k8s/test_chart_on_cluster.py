"""The Helm chart against the session's cluster: every value set passes its admission
(server-side dry run), and the chart's Role is enough for the Kubernetes backend, and
no more, when the API authenticates as the chart's ServiceAccount: the API runs as a
process inside the cluster's namespaces (tests/k8s/cluster_api.py) with the chart's
settings, its runner Job runs the runner image on the node."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.deploy.chart import CHART, VALUE_SETS, Rendered, render
from tests.e2e.sync_executor import SyncExecutor
from tests.k8s.cluster_api import ClusterApi, pod_url, start_cluster_api
from tests.k8s.real_cluster import API_PORT, RealCluster
from tests.services import RedisServer, S3Server
from tools.images.chart import qualified

pytestmark = pytest.mark.timeout(300, func_only=True)

RELEASE = "zyra"
FULLNAME = "zyra-zyra-orchestrator"
# What the API needs in a namespace to run: its identity, permissions and settings.
SETUP_KINDS = ("ServiceAccount", "Role", "RoleBinding", "Secret", "ConfigMap")


def _apply(cluster: RealCluster, namespace: str, docs: list[dict], *flags: str) -> str:
    done = subprocess.run(
        [cluster.binaries["kubectl"], f"--kubeconfig={cluster.kubeconfig}",
         "apply", "-n", namespace, *flags, "-f", "-"],
        input=yaml.safe_dump_all(docs), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_value_set_passes_server_side_dry_run(
    name: str, cluster: RealCluster, namespace: str
) -> None:
    rendered = render(VALUE_SETS[name], namespace=namespace)
    out = _apply(cluster, namespace, rendered.resources, "--dry-run=server")
    assert out.count("(server dry run)") == len(rendered.resources), out


def _token_kubeconfig(cluster: RealCluster, namespace: str, path: Path) -> Path:
    """A kubeconfig that authenticates with a token of the chart's ServiceAccount, for
    a process inside the cluster's namespaces (the API server on its own port there)."""
    token = cluster.kubectl("create", "token", FULLNAME, "-n", namespace,
                                  "--duration=1h")  # fmt: skip
    assert token.returncode == 0, token.stderr
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "test", "cluster": {
            "server": f"https://127.0.0.1:{API_PORT}",
            "certificate-authority": str(cluster.ca.cert_path)}}],
        "users": [{"name": "sa", "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": "sa", "context": {"cluster": "test", "user": "sa",
                                                "namespace": namespace}}],
    }))  # fmt: skip
    return path


def _api_env(rendered: Rendered, keys_file: Path) -> dict[str, str]:
    """The API container's environment from the chart, as the kubelet would build it."""
    env = rendered.api_env()
    # This machine's process, not the container: its own port, folders, socket and keys.
    for name in ("ZYRA_HOST", "ZYRA_PORT", "ZYRA_DATA_DIR", "ZYRA_WORK_DIR",
                 "ZYRA_SYNC_EXECUTOR_SOCKET"):  # fmt: skip
        env.pop(name)
    keys = rendered.secret_data(f"{FULLNAME}-api-keys")
    keys_file.write_text(keys["api-keys"])
    env["ZYRA_API_KEYS_FILE"] = str(keys_file)
    return env


@pytest.fixture
def chart_api(
    tmp_path: Path,
    inputs: Path,
    cluster: RealCluster,
    runner_image: str,
    namespace: str,
    redis_server: RedisServer,
    s3_server: S3Server,
) -> Iterator[tuple[ClusterApi, Rendered]]:
    rendered = render(
        sets={
            # Where the API (inside the cluster's namespaces) and runner pods reach them.
            "redis.deploy.enabled": False,
            "redis.url": pod_url(cluster, redis_server.url)[:-1] + "6",
            "minio.deploy.enabled": False,
            "s3.bucket": f"chart-{namespace}",
            "s3.endpointUrl": pod_url(cluster, s3_server.url),
            "s3.accessKey": s3_server.access_key,
            "s3.secretKey": s3_server.secret_key,
        },
        namespace=namespace,
    )
    setup = [r for r in rendered.without_hooks() if r["kind"] in SETUP_KINDS]
    _apply(cluster, namespace, setup)
    env = _api_env(rendered, tmp_path / "api-keys")
    # The chart's runner image, as the node has it (imported, never pulled).
    assert qualified(env["ZYRA_K8S__IMAGE"]) == runner_image
    sa_kubeconfig = _token_kubeconfig(cluster, namespace, tmp_path / "sa.kubeconfig")
    env["ZYRA_K8S__KUBECONFIG"] = str(sa_kubeconfig)
    # The pod's other container: sync runs fork in a sync executor of their own.
    sandbox = rendered.container_env("sync-executor")["ZYRA_SANDBOX"]
    executor = SyncExecutor(tmp_path / "sync" / "executor.sock", tmp_path / "executor.log",
                            sandbox=sandbox)  # fmt: skip
    executor.start()
    env |= {"ZYRA_SYNC_EXECUTOR_SOCKET": str(executor.socket),
            "ZYRA_WORK_DIR": str(tmp_path / "shared-work")}  # fmt: skip
    server = start_cluster_api(cluster, tmp_path, inputs, **env)
    yield server, rendered
    server.stop()
    executor.stop()


def test_backend_as_the_charts_service_account_runs_the_helm_test_end_to_end(
    chart_api: tuple[ClusterApi, Rendered], cluster: RealCluster, namespace: str
) -> None:
    server, _ = chart_api
    # The same script `helm test` runs: upload, sync run, async run as a Job, downloads.
    done = subprocess.run(
        [sys.executable, str(CHART / "files" / "smoke_test.py"), server.url, "--async",
         "--timeout", "180"],
        env={"ZYRA_API_KEYS_FILE": server.env["ZYRA_API_KEYS_FILE"], "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr + server.log_path.read_text()[-3000:]
    assert "sync: job" in done.stdout and "async: job" in done.stdout
    async_job = done.stdout.split("async: job ")[1].split()[0]
    jobs = cluster.kubectl("get", "jobs", "-n", namespace, "-o", "json")
    [job] = json.loads(jobs.stdout)["items"]
    assert job["metadata"]["name"] == f"zyra-{async_job}"
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == f"{FULLNAME}-runner"
    env = {e["name"]: e.get("valueFrom") for e in pod_spec["containers"][0]["env"]}
    # No credential of the service: the run's own, from the run's own Secret.
    assert not [name for name in env if name.startswith("AWS_") or name == "ZYRA_REDIS_URL"]
    assert env["ZYRA_JOB_CREDENTIALS"] == {
        "secretKeyRef": {"name": f"zyra-{async_job}", "key": "credentials"}
    }
    deadline = time.monotonic() + 10  # the API deletes it once the run is finalised
    while (
        f"secret/zyra-{async_job}"
        in cluster.kubectl("get", "secrets", "-n", namespace, "-o", "name").stdout
    ):
        assert time.monotonic() < deadline, "the run's Secret was not deleted"
        time.sleep(0.2)
    assert "Forbidden" not in server.log_path.read_text()  # no call the Role lacks


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("create", "jobs.batch", "yes"),
        ("delete", "jobs.batch", "yes"),
        ("watch", "pods", "yes"),
        ("get", "pods/log", "yes"),
        ("create", "secrets", "yes"),  # each run's own credentials
        ("delete", "secrets", "yes"),
        # Not needed by the backend, so not granted:
        ("delete", "pods", "no"),
        ("create", "pods", "no"),
        ("patch", "jobs.batch", "no"),
        ("get", "secrets", "no"),
        ("list", "secrets", "no"),
        ("watch", "secrets", "no"),
        ("update", "secrets", "no"),
        ("create", "pods/exec", "no"),
        ("list", "jobs.batch --all-namespaces", "no"),
    ],
)
def test_service_account_may_do_only_what_the_backend_needs(
    verb: str, resource: str, allowed: str, cluster: RealCluster, namespace: str
) -> None:
    rendered = render(namespace=namespace)
    setup = [r for r in rendered.without_hooks() if r["kind"] in ("ServiceAccount", "Role",
                                                                  "RoleBinding")]  # fmt: skip
    _apply(cluster, namespace, setup)
    account = f"system:serviceaccount:{namespace}:{FULLNAME}"
    where = resource.split()[1:] or ["-n", namespace]
    done = cluster.kubectl("auth", "can-i", verb, resource.split()[0], *where,
                           f"--as={account}")  # fmt: skip
    assert done.stdout.strip() == allowed, done.stderr
