"""The API (`python -m api`, ZYRA_BACKEND=kubernetes) run where runner pods live.

The API process runs inside the test cluster's network, mount and PID namespaces: there
it reaches the API server on its own port, and Redis and MinIO (host loopback services)
at the node IP through `RealCluster.expose`, the very addresses runner pods are given
(a runner's Redis URL and presigned S3 URLs are made from the API's own). The test
process reaches the API through a forwarder on host loopback. The machine's own network
is left as it is.

    api = start_cluster_api(cluster, tmp, inputs, **backend_env(...))
    with api.client() as c: ...
    api.stop()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.e2e.conftest import API_KEY, LIMITS_OFF, ApiServer
from tests.k8s.cluster import _write_kubeconfig
from tests.k8s.cluster_namespace import Daemon, die_with_parent
from tests.k8s.netns_forward import Endpoint, socket_in_netns
from tests.k8s.real_cluster import API_PORT, NODE_IP, RealCluster
from tests.services import REPO, RedisServer, S3Server, wait_ready


@dataclass
class ClusterApi(ApiServer):
    """An API process inside the cluster's namespaces. `process` is its nsenter parent,
    which waits for it and exits with its status but forwards no signal: stop it here."""

    daemon: Daemon | None = field(default=None, repr=False)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.daemon is not None
        self.daemon.signal(sig)

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crashed pod's API would end."""
        if self.process.poll() is None:
            self._signal(signal.SIGKILL)
            self.process.wait(timeout=20)


def spawn_inside(
    cluster: RealCluster, name: str, argv: list[str], log: Path, env: dict[str, str], cwd: Path
) -> Daemon:
    """A process of the test inside the cluster's namespaces, with exactly `env`."""
    assert cluster.namespace is not None
    enter = ["nsenter", f"--target={cluster.namespace.init_pid}", "--net", "--mount", "--pid",
             f"--wdns={cwd}", "--"]  # fmt: skip
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*enter, *argv], env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
        )  # fmt: skip
    return Daemon(name, process, log)


def free_port_inside(cluster: RealCluster) -> int:
    """A port free on 127.0.0.1 in the cluster's network namespace."""
    assert cluster.namespace is not None
    with socket_in_netns(cluster.namespace.netns) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reach_inside(cluster: RealCluster, port: int) -> int:
    """A host loopback port forwarded to 127.0.0.1:`port` in the cluster's namespace."""
    assert cluster.forwarders is not None and cluster.namespace is not None
    inside = Endpoint("127.0.0.1", port, cluster.namespace.netns)
    return cluster.forwarders.add(Endpoint("127.0.0.1", 0), inside).port


def inside_kubeconfig(cluster: RealCluster, path: Path) -> Path:
    """An admin kubeconfig for a process inside the namespace (the API server's own port)."""
    server = f"https://127.0.0.1:{API_PORT}"
    _write_kubeconfig(path, server, cluster.ca.cert_path, cluster.admin, "admin")
    return path


def pod_url(cluster: RealCluster, url: str) -> str:
    """`url` of a host loopback server, as pods (and the API inside) reach it."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port is not None, url
    host, port = cluster.expose(parts.port)
    netloc = parts.netloc.replace(f"127.0.0.1:{parts.port}", f"{host}:{port}")
    return urlunsplit(parts._replace(netloc=netloc))


def backend_env(
    cluster: RealCluster,
    tmp: Path,
    namespace: str,
    image: str,
    redis_server: RedisServer,
    s3_server: S3Server,
    redis_db: int,
) -> dict[str, str]:
    """ZYRA_BACKEND=kubernetes with Redis, MinIO and the API server at the addresses a
    process inside the cluster (the API, a runner pod) reaches them."""
    redis_url = pod_url(cluster, redis_server.url)
    s3_env = s3_server.api_env(bucket=f"k8s-{namespace}")
    s3_env["ZYRA_S3_ENDPOINT_URL"] = pod_url(cluster, s3_server.url)
    return {
        "ZYRA_BACKEND": "kubernetes",
        "ZYRA_REDIS_URL": redis_url.rsplit("/", 1)[0] + f"/{redis_db}",
        **s3_env,
        "ZYRA_K8S__KUBECONFIG": str(inside_kubeconfig(cluster, tmp / "inside.kubeconfig")),
        "ZYRA_K8S__NAMESPACE": namespace,
        "ZYRA_K8S__IMAGE": image,
        # Pods and the API reach the tests' loopback servers at the node IP (`pod_url`).
        "ZYRA_OUTBOUND_ALLOW": NODE_IP,
    }


def start_cluster_api(
    cluster: RealCluster, tmp: Path, inputs: Path, timeout: float = 120, **env: str
) -> ClusterApi:
    """As tests/e2e/conftest.py start_api, inside the cluster's namespaces."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port_inside(cluster)
    data_dir, log_path = tmp / "data", tmp / "api.log"
    inherited = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "XDG_RUNTIME_DIR")}
    full_env = {
        **inherited,
        "ZYRA_API_KEYS": f"e2e:{API_KEY}",
        "ZYRA_DATA_DIR": str(data_dir),
        "ZYRA_ALLOWED_PATH_PREFIXES": str(inputs),
        "ZYRA_HOST": "127.0.0.1",
        "ZYRA_PORT": str(port),
        **LIMITS_OFF,
        **env,
    }
    daemon = spawn_inside(cluster, "api", [sys.executable, "-m", "api"], log_path, full_env, REPO)
    url = f"http://127.0.0.1:{reach_inside(cluster, port)}"
    server = ClusterApi(url, daemon.process, data_dir, log_path, env, daemon=daemon)
    if wait_ready(f"{url}/readyz", daemon.process, log_path.read_text, timeout=timeout):
        return server
    server.kill()
    raise RuntimeError(f"API not ready in time:\n{log_path.read_text()}")
