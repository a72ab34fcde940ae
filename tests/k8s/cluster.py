"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) on loopback."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from tests.k8s.pki import CertificateAuthority, service_account_keys
from tests.services import REPO, free_port

# Controllers the Job path needs; `*` would add ~40 more loops for no benefit on 2 cores.
CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "ttl-after-finished-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "namespace-controller",
    "node-lifecycle-controller",
    "pod-garbage-collector-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
)


def k8s_binaries() -> dict[str, str]:
    """Paths of the pinned binaries, built (cold, ~15 min) or restored from the cache."""
    built = subprocess.run(
        ["bash", str(REPO / "tools" / "k8s" / "build-binaries.sh")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = [line.split("=", 1) for line in built.stdout.splitlines() if "=" in line]
    return {name: path for name, path in lines}


def _die_with_parent() -> None:
    # If pytest is SIGKILLed, stop() never runs: have the kernel SIGTERM the child instead
    # of leaving an orphaned API server behind. Linux-only; a no-op elsewhere.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True)
class Credentials:
    """A client identity: a cert/key pair signed by the cluster CA."""

    cert: Path
    key: Path


def _write_kubeconfig(path: Path, server: str, ca: Path, creds: Credentials, user: str) -> None:
    # JSON is valid YAML, and avoids needing a YAML writer.

    path.write_text(
        json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "zyra-test",
            "clusters": [{"name": "zyra-test",
                          "cluster": {"server": server, "certificate-authority": str(ca)}}],
            "users": [{"name": user, "user": {"client-certificate": str(creds.cert),
                                              "client-key": str(creds.key)}}],
            "contexts": [{"name": "zyra-test", "context": {"cluster": "zyra-test", "user": user}}],
        }, indent=1)
    )  # fmt: skip


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager, all bound to 127.0.0.1."""

    def __init__(self, folder: Path, binaries: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.binaries = binaries or k8s_binaries()
        self.etcd_port, self.etcd_peer_port, self.port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self.pki = folder / "pki"
        self.logs = folder / "logs"
        self.kubeconfig = folder / "admin.kubeconfig"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.start_seconds = 0.0

    # ------------------------------------------------------------------ PKI
    def _make_pki(self) -> None:
        self.ca = CertificateAuthority(self.pki)
        issue = self.ca.issue
        self.serving = Credentials(*issue(
            "apiserver", "kube-apiserver", server=True,
            hosts=("127.0.0.1", "10.0.0.1", "localhost", "kubernetes", "kubernetes.default",
                   "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"),
        ))  # fmt: skip
        self.admin = Credentials(
            *issue("admin", "admin", organizations=("system:masters",), client=True)
        )
        self.kubelet_client = Credentials(*issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client",
            organizations=("system:masters",), client=True,
        ))  # fmt: skip
        self.controller_manager = Credentials(
            *issue("controller-manager", "system:kube-controller-manager", client=True)
        )
        self.scheduler = Credentials(*issue("scheduler", "system:kube-scheduler", client=True))
        self.sa_private, self.sa_public = service_account_keys(self.pki)

    def node_credentials(self, node: str) -> tuple[Credentials, Credentials]:
        """(client, serving) certs for a node agent, as a kubelet would hold them."""
        client_creds = Credentials(*self.ca.issue(
            f"kubelet-{node}", f"system:node:{node}", organizations=("system:nodes",),
            client=True,
        ))  # fmt: skip
        serving = Credentials(*self.ca.issue(
            f"kubelet-{node}-serving", node, hosts=("127.0.0.1", "localhost", node), server=True
        ))  # fmt: skip
        return client_creds, serving

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in pytest must not kill it before stop()
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        log.close()

    def start(self, timeout: float = 120) -> None:
        started = time.monotonic()
        self.logs.mkdir(parents=True, exist_ok=True)
        self._make_pki()
        etcd_url, peer_url = (
            f"http://127.0.0.1:{self.etcd_port}",
            f"http://127.0.0.1:{self.etcd_peer_port}",
        )
        self._spawn("etcd", [
            self.binaries["etcd"], "--name", "default", "--data-dir", str(self.folder / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"default={peer_url}",
            "--unsafe-no-fsync",  # test data: durability is not worth the fsync latency
        ])  # fmt: skip
        self._spawn("kube-apiserver", [
            self.binaries["kube-apiserver"],
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--tls-cert-file={self.serving.cert}", f"--tls-private-key-file={self.serving.key}",
            f"--client-ca-file={self.ca.cert_path}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.sa_public}",
            f"--service-account-signing-key-file={self.sa_private}",
            "--service-cluster-ip-range=10.0.0.0/24",
            f"--kubelet-client-certificate={self.kubelet_client.cert}",
            f"--kubelet-client-key={self.kubelet_client.key}",
            f"--kubelet-certificate-authority={self.ca.cert_path}",
            "--kubelet-preferred-address-types=InternalIP",
            "--endpoint-reconciler-type=none",  # no kube-proxy, nothing to reconcile
            "--profiling=false",
        ])  # fmt: skip
        self._write_kubeconfigs()
        self._wait_ready(started + timeout)
        self._spawn("kube-controller-manager", [
            self.binaries["kube-controller-manager"],
            f"--kubeconfig={self.folder / 'controller-manager.kubeconfig'}",
            f"--controllers={','.join(CONTROLLERS)}",
            "--use-service-account-credentials",
            f"--service-account-private-key-file={self.sa_private}",
            f"--root-ca-file={self.ca.cert_path}",
            "--leader-elect=false",
            "--secure-port=0",  # no health endpoint needed, and no port to collide on
        ])  # fmt: skip
        self._wait_default_service_account(started + timeout)
        self.start_seconds = time.monotonic() - started

    def _write_kubeconfigs(self) -> None:
        _write_kubeconfig(self.kubeconfig, self.server, self.ca.cert_path, self.admin, "admin")
        _write_kubeconfig(
            self.folder / "controller-manager.kubeconfig", self.server, self.ca.cert_path,
            self.controller_manager, "system:kube-controller-manager",
        )  # fmt: skip

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")

    def _wait_ready(self, deadline: float) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca.cert_path))
        ctx.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                # Early on /readyz answers 500 with a per-check report; only "ok" means ready.
                with urllib.request.urlopen(f"{self.server}/readyz", context=ctx, timeout=2) as r:
                    if r.read() == b"ok":
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"kube-apiserver not ready; see {self.logs}")

    def _wait_default_service_account(self, deadline: float) -> None:
        # Pods are rejected until the ServiceAccount controller made "default"; waiting here
        # also proves the controller manager is up and authorised.
        api = client.CoreV1Api(self.api_client())
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                api.read_namespaced_service_account("default", "default")
                return
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
            time.sleep(0.2)
        raise RuntimeError(
            f"controller manager did not create the default ServiceAccount; see {self.logs}"
        )

    def api_client(self, creds: Credentials | None = None) -> client.ApiClient:
        """An official-client ApiClient (admin unless other credentials are given)."""
        creds = creds or self.admin
        config = client.Configuration(host=self.server)
        config.ssl_ca_cert = str(self.ca.cert_path)
        config.cert_file, config.key_file = str(creds.cert), str(creds.key)
        return client.ApiClient(config)

    def kubectl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binaries["kubectl"], f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def stop(self) -> None:
        # Reverse start order, by PID: controller manager, then API server, then etcd.
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
        self.processes.clear()
