"""Real Jobs on a real node (kubelet + containerd + runc, kube-proxy, CoreDNS).

Each test asserts what a user sees through the Kubernetes API. The cluster is one
session fixture of this module (RealCluster, in namespaces of its own); the probe image
is a static Go binary (tests/k8s/images/probe) imported with `ctr import`.
"""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.k8s.cluster_namespace import processes_in
from tests.k8s.machine_state import MachineState
from tests.k8s.real_cluster import CGROUP_FS, RealCluster
from tests.k8s.static_images import probe_image
from tests.services import RedisServer

# The timeout covers each test's own body; the session fixture's first set-up may build
# binaries (minutes when cold) and has its own deadlines.
pytestmark = pytest.mark.timeout(300, func_only=True)


def pod_spec(image: str, args: list[str], **container: Any) -> dict[str, Any]:
    return {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "probe", "image": image, "imagePullPolicy": "Never",
                        "args": args, **container}],
    }  # fmt: skip


def run_job(
    cluster: RealCluster, namespace: str, spec: dict[str, Any], timeout: float = 120
) -> tuple[client.V1Job, client.V1Pod]:
    """Create a Job (no retries) from a pod spec; wait until it completes or fails.
    Returns the finished Job and its pod."""
    name = f"job-{uuid.uuid4().hex[:6]}"
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": spec}}}  # fmt: skip
    with cluster.api_client() as api:
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        batch.create_namespaced_job(namespace, body)
        deadline = time.monotonic() + timeout
        while True:
            job = batch.read_namespaced_job(name, namespace)
            finished = [
                c.type for c in job.status.conditions or []
                if c.type in ("Complete", "Failed") and c.status == "True"
            ]  # fmt: skip
            if finished:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"Job {name} did not finish in {timeout}s\n{cluster.describe_all(namespace)}"
                )
            time.sleep(0.2)
        pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
        assert len(pods) == 1, cluster.describe_all(namespace)
        return job, pods[0]


def terminated(pod: client.V1Pod) -> client.V1ContainerStateTerminated:
    return pod.status.container_statuses[0].state.terminated


def logs(cluster: RealCluster, pod: client.V1Pod) -> str:
    with cluster.api_client() as api:
        return client.CoreV1Api(api).read_namespaced_pod_log(
            pod.metadata.name, pod.metadata.namespace
        )


def succeeded(job: client.V1Job) -> bool:
    return any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or [])


# First in the module, so it runs before the session cluster starts (it works with one
# running too: other clusters' cgroup roots are left out of the comparison).
def test_stop_leaves_the_machine_as_it_was(
    cluster_folder: Path, node_tools: dict[str, str], probe_ref: str
) -> None:
    own = RealCluster(cluster_folder, node_tools)
    before = MachineState.capture(own.cgroup_root)
    try:
        own.start()
        own.import_image(probe_image().tarball)
        # Something of everything at stop time: a running container (shim, cgroups,
        # overlay and tmpfs mounts, a veth) and a Service (kube-proxy's iptables rules).
        with own.api_client() as api:
            core = client.CoreV1Api(api)
            core.create_namespaced_pod("default", {
                "metadata": {"name": "server", "labels": {"app": "server"}},
                "spec": pod_spec(probe_ref, ["serve=8080"]),
            })  # fmt: skip
            core.create_namespaced_service("default", {
                "metadata": {"name": "server"},
                "spec": {"selector": {"app": "server"}, "ports": [{"port": 80,
                         "targetPort": 8080}]},
            })  # fmt: skip
            deadline = time.monotonic() + 60
            while core.read_namespaced_pod("server", "default").status.phase != "Running":
                assert time.monotonic() < deadline, own.describe_all("default")
                time.sleep(0.2)
        # The kubelet did write its sysctls, to the files over /proc/sys inside only.
        assert own.netns_run("cat", "/proc/sys/vm/overcommit_memory").strip() == "1"
        assert "KUBE-SERVICES" in own.netns_run("iptables-save")
        cgroup_root = own.cgroup_root.lstrip("/")
        assert (CGROUP_FS / "memory" / cgroup_root).exists()
        inodes = dict(own.namespace.inodes) if own.namespace else {}
    finally:
        own.stop()
    after = MachineState.capture(own.cgroup_root)
    changed = before.differences(after)
    assert not changed, "\n".join(changed)
    assert {kind: processes_in(ino) for kind, ino in inodes.items()} == {
        "net": [], "mnt": [], "pid": []
    }  # fmt: skip
    assert not [h.name for h in CGROUP_FS.iterdir() if (h / cgroup_root).exists()]


def test_a_job_completes(cluster: RealCluster, namespace: str, probe_ref: str) -> None:
    job, pod = run_job(cluster, namespace, pod_spec(probe_ref, ["print=hello", "exit=0"]))
    assert succeeded(job), cluster.describe_all(namespace)
    assert job.status.succeeded == 1
    assert terminated(pod).exit_code == 0
    assert terminated(pod).reason == "Completed"


def test_exit_code_is_reported(cluster: RealCluster, namespace: str, probe_ref: str) -> None:
    job, pod = run_job(cluster, namespace, pod_spec(probe_ref, ["exit=3"]))
    assert not succeeded(job)
    assert job.status.failed == 1
    state = terminated(pod)
    assert (state.exit_code, state.reason) == (3, "Error"), cluster.describe_all(namespace)


def test_memory_limit_ends_in_oom_kill(
    cluster: RealCluster, namespace: str, probe_ref: str
) -> None:
    memory = {"memory": "64Mi"}
    spec = pod_spec(probe_ref, ["oom"], resources={"limits": memory, "requests": memory})
    job, pod = run_job(cluster, namespace, spec)
    assert not succeeded(job)
    state = terminated(pod)
    assert (state.reason, state.exit_code) == ("OOMKilled", 137), cluster.describe_all(namespace)
    assert "allocated 32 MiB" in logs(cluster, pod)  # it really ran up to the limit


def test_security_context_and_empty_dir(
    cluster: RealCluster, namespace: str, probe_ref: str
) -> None:
    spec = pod_spec(
        probe_ref, ["id", "write=/probe-file", "write=/work/probe-file"],
        securityContext={"runAsUser": 10001, "runAsGroup": 10001,
                         "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                         "capabilities": {"drop": ["ALL"]}},
        volumeMounts=[{"name": "work", "mountPath": "/work"}],
    )  # fmt: skip
    spec["volumes"] = [{"name": "work", "emptyDir": {}}]
    job, pod = run_job(cluster, namespace, spec)
    output = logs(cluster, pod)
    assert succeeded(job), cluster.describe_all(namespace)
    assert "uid=10001 gid=10001" in output
    assert "write /probe-file failed: open /probe-file: read-only file system" in output, output
    assert "write /work/probe-file ok" in output


def test_pod_reaches_a_service_by_its_dns_name(
    cluster: RealCluster, namespace: str, probe_ref: str
) -> None:
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        server = pod_spec(probe_ref, ["serve=8080"])
        server["containers"][0]["readinessProbe"] = {
            "httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1
        }  # fmt: skip
        core.create_namespaced_pod(
            namespace, {"metadata": {"name": "echo", "labels": {"app": "echo"}}, "spec": server}
        )
        core.create_namespaced_service(namespace, {
            "metadata": {"name": "echo"},
            "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]},
        })  # fmt: skip
    fqdn = f"echo.{namespace}.svc.cluster.local"
    job, pod = run_job(cluster, namespace, pod_spec(probe_ref, ["get=http://echo/",
                                                               f"get=http://{fqdn}/"]))  # fmt: skip
    assert succeeded(job), cluster.describe_all(namespace)
    assert logs(cluster, pod).count("hello from echo") == 2


def test_pod_reaches_the_api_server_service(
    cluster: RealCluster, namespace: str, probe_ref: str
) -> None:
    spec = pod_spec(probe_ref, ["tcp=kubernetes.default.svc:443"])
    job, pod = run_job(cluster, namespace, spec)
    assert succeeded(job), cluster.describe_all(namespace)
    assert "tcp kubernetes.default.svc:443 ok" in logs(cluster, pod)


def test_pod_reaches_a_host_loopback_service_through_expose(
    cluster: RealCluster, namespace: str, probe_ref: str, redis_server: RedisServer
) -> None:
    node_ip, port = cluster.expose(redis_server.port)
    job, pod = run_job(cluster, namespace, pod_spec(probe_ref, [f"redis-ping={node_ip}:{port}"]))
    assert succeeded(job), cluster.describe_all(namespace)
    assert f"redis {node_ip}:{port} replied +PONG" in logs(cluster, pod)


def test_pod_reaches_a_host_http_server_through_expose(
    cluster: RealCluster, namespace: str, probe_ref: str
) -> None:
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello from the host\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        node_ip, port = cluster.expose(server.server_address[1])
        job, pod = run_job(
            cluster, namespace, pod_spec(probe_ref, [f"get=http://{node_ip}:{port}/"])
        )
        assert succeeded(job), cluster.describe_all(namespace)
        assert "hello from the host" in logs(cluster, pod)
    finally:
        server.shutdown()
        server.server_close()


def test_kubectl_logs_of_a_job(cluster: RealCluster, namespace: str, probe_ref: str) -> None:
    job, _pod = run_job(
        cluster, namespace, pod_spec(probe_ref, ["print=line one", "print=line two"])
    )
    shown = cluster.kubectl("logs", "-n", namespace, f"job/{job.metadata.name}")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "line one\nline two\n"
