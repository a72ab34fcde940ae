"""A whole Kubernetes cluster with a real node, in namespaces of its own.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (+ runc),
kubelet, kube-proxy (iptables) and CoreDNS run inside one private network + mount + PID
namespace (see cluster_namespace.py). The node IP sits on a bridge made there; pods get
addresses from the CNI bridge plugin. The machine is reached only through explicit TCP
forwarders: the API server on host 127.0.0.1:<port>, and `expose()` for host loopback
services pods need (Redis, MinIO). Everything the cluster writes lands under `folder`:
/run is a private tmpfs and /var an overlay whose upper layer is in `folder`, and the
kubelet's writes to machine-wide sysctls hit files bind-mounted over them.

    cluster = RealCluster(folder)
    cluster.start()
    cluster.import_image(tarball)            # ctr import: podman save or image_tarball
    node_ip, port = cluster.expose(6379)     # host 127.0.0.1:6379 as seen by pods
    cluster.stop()                           # processes, mounts, netns, cgroups: all gone
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from kubernetes import client

from tests.k8s.cluster import CONTROLLERS, Credentials, _write_kubeconfig, k8s_binaries
from tests.k8s.cluster_namespace import ClusterNamespace
from tests.k8s.netns_forward import Endpoint, Forwarders, socket_in_netns
from tests.k8s.pki import CertificateAuthority, service_account_keys
from tests.k8s.static_images import LocalImage, pause_image
from tests.services import REPO, tool_binary

NODE_NAME = "zyra-node"
NODE_BRIDGE = "zyra0"
NODE_IP = "10.254.0.1"  # on NODE_BRIDGE, inside the cluster's network namespace only
POD_SUBNET = "10.244.0.0/24"
SERVICE_CIDR = "10.0.0.0/24"
API_PORT = 6443  # inside the namespace: fixed ports cannot collide with the machine's

# Machine-wide sysctls the kubelet writes at start (setupKernelTunables); inside the
# cluster's mount namespace each is a file of ours, so the machine keeps its values.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
)  # fmt: skip

# The Job path's controllers, plus what Services and the usual workloads need on a node.
NODE_CONTROLLERS = (
    *CONTROLLERS,
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "cronjob-controller",
    "disruption-controller",
    "resourcequota-controller",
    "taint-eviction-controller",
)

CGROUP_FS = Path("/sys/fs/cgroup")
CGROUP_PREFIX = "zyra-k8s-"


@contextlib.contextmanager
def short_folder(name: str) -> Iterator[Path]:
    """A folder for a cluster, removed afterwards (with the images imported into it).
    Under /tmp with a short name: containerd's socket path must fit in a sockaddr_un,
    and pytest's own folders (…/pytest-N/popen-gw0/<test name>/) come close to that."""
    folder = Path(tempfile.mkdtemp(prefix=f"zyra-{name}-", dir="/tmp"))
    try:
        yield folder
    finally:
        # Only once nothing is mounted under it: removing through a mount left behind
        # (a pod's hostPath volume) would delete what it shows. A test's report holds
        # what it needs; pytest's own folders would have been kept for three runs.
        with open("/proc/self/mountinfo") as mounts:
            mounted = any(line.split()[4].startswith(f"{folder}/") for line in mounts)
        if not mounted:
            shutil.rmtree(folder, ignore_errors=True)


def node_binaries() -> dict[str, str]:
    """Every binary the cluster runs: built (cold) or from the cache, and the Debian
    runtime (containerd, runc, CNI plugins, iptables) installed if missing."""
    binaries = k8s_binaries()
    binaries["coredns"] = tool_binary("k8s/build-coredns.sh", "ZYRA_COREDNS_BIN")
    subprocess.run(
        ["bash", str(REPO / "tools" / "k8s" / "install-node-runtime.sh")],
        capture_output=True, text=True, check=True, timeout=900,
    )  # fmt: skip
    return binaries


def _in_netns_http_ok(netns: Path, port: int, path: str) -> bool:
    """GET http://127.0.0.1:<port><path> inside the cluster namespace answers 200."""
    sock = socket_in_netns(netns)
    try:
        sock.settimeout(1)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        return sock.recv(64).startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
    except OSError:
        return False
    finally:
        sock.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_stale_cgroup_roots() -> list[str]:
    """Remove the (empty) cgroup trees of clusters whose test process was killed before
    stop() ran; the kernel killed their processes along with their PID namespace."""
    removed = []
    for hierarchy in CGROUP_FS.iterdir():
        for root in hierarchy.glob(f"{CGROUP_PREFIX}*"):
            pid = root.name.removeprefix(CGROUP_PREFIX).split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                with contextlib.suppress(OSError):  # still busy: leave it to the next run
                    _remove_cgroup_tree(root, time.monotonic() + 2)
                    removed.append(str(root))
    return removed


def _remove_cgroup_tree(path: Path, deadline: float) -> None:
    """rmdir a cgroup v1/v2 tree bottom-up; EBUSY while the last tasks are still exiting."""
    while path.exists():
        busy = False
        for dirpath, _dirs, _files in os.walk(path, topdown=False):
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                busy = True
        if busy:
            time.sleep(0.05)


class RealCluster:
    """Control plane + one real node (kubelet, containerd, runc, kube-proxy, CoreDNS)."""

    def __init__(self, folder: Path, binaries: dict[str, str] | None = None) -> None:
        self.folder = folder.resolve()
        self.binaries = binaries or node_binaries()
        # The test process's PID in the name tells a crashed run's leftovers from a live one.
        self.cgroup_root = f"/{CGROUP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.pki = self.folder / "pki"
        self.logs = self.folder / "logs"
        self.containerd_socket = self.folder / "containerd" / "containerd.sock"
        self.kubeconfig = self.folder / "admin.kubeconfig"  # host side, via the forwarder
        self.server = ""
        self.timings: dict[str, float] = {}
        self.namespace: ClusterNamespace | None = None
        self.forwarders: Forwarders | None = None
        self.pause: LocalImage | None = None
        self._exposed: dict[tuple[str, int], tuple[str, int]] = {}
        if len(str(self.containerd_socket)) > 100:  # sun_path is 108 bytes
            raise ValueError(f"folder path too long for a unix socket: {self.folder}")
        if not re.fullmatch(r"[\w/.-]+", str(self.folder)):  # it goes into mount options
            raise ValueError(f"folder path must be plain (letters, digits, _ . - /): {self.folder}")

    # ------------------------------------------------------------------ set-up
    def _make_pki(self) -> None:
        self.ca = ca = CertificateAuthority(self.pki)
        self.serving = Credentials(*ca.issue(
            "apiserver", "kube-apiserver", server=True,
            hosts=("127.0.0.1", NODE_IP, "10.0.0.1", "localhost", "kubernetes",
                   "kubernetes.default", "kubernetes.default.svc",
                   "kubernetes.default.svc.cluster.local"),
        ))  # fmt: skip
        self.admin = Credentials(
            *ca.issue("admin", "admin", organizations=("system:masters",), client=True)
        )
        self.apiserver_kubelet = Credentials(*ca.issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client",
            organizations=("system:masters",), client=True,
        ))  # fmt: skip
        self.sa_private, self.sa_public = service_account_keys(self.pki)
        identities = {
            # kubeconfig name: (common name, organizations); RBAC's bootstrap bindings
            # authorise each (system:node-proxier for kube-proxy, Node authorizer for the
            # kubelet). CoreDNS reads the API as admin: tests only.
            "controller-manager": ("system:kube-controller-manager", ()),
            "scheduler": ("system:kube-scheduler", ()),
            "kube-proxy": ("system:kube-proxy", ()),
            "kubelet": (f"system:node:{NODE_NAME}", ("system:nodes",)),
            "coredns": ("admin", ("system:masters",)),
        }
        inside = f"https://127.0.0.1:{API_PORT}"
        for name, (common_name, orgs) in identities.items():
            creds = Credentials(*ca.issue(name, common_name, organizations=orgs, client=True))
            _write_kubeconfig(
                self.folder / f"{name}.kubeconfig", inside, ca.cert_path, creds, common_name
            )
        self.kubelet_serving = Credentials(*ca.issue(
            "kubelet-serving", NODE_NAME, hosts=(NODE_IP, NODE_NAME, "127.0.0.1"), server=True
        ))  # fmt: skip

    def _setup_script(self) -> str:
        ns = self.folder / "ns"
        lines = [f"mkdir -p {ns}/sysctl {ns}/var/upper {ns}/var/work"]
        for sysctl in KUBELET_SYSCTLS:
            copy = ns / "sysctl" / sysctl.replace("/", ".")
            lines += [f"cat /proc/sys/{sysctl} > {copy}", f"mount --bind {copy} /proc/sys/{sysctl}"]
        lines += [
            # Private /run (containerd 1.6 puts shim sockets in /run/containerd/s and pod
            # netns under /run/netns whatever its config says) and /var (the kubelet
            # insists on /var/lib/kubelet/device-plugins).
            "mount -t tmpfs -o mode=0755,size=256m zyra-run /run",
            f"mount -t overlay zyra-var -o lowerdir=/var,upperdir={ns}/var/upper,"
            f"workdir={ns}/var/work /var",
            "ip link set lo up",
            f"ip link add {NODE_BRIDGE} type bridge",
            f"ip addr add {NODE_IP}/24 dev {NODE_BRIDGE}",
            f"ip link set {NODE_BRIDGE} up",
        ]
        return "\n".join(lines)

    def _write_configs(self) -> None:
        f = self.folder
        for d in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "tmp", "coredns"):
            (f / d).mkdir(parents=True, exist_ok=True)
        assert self.pause is not None
        (f / "containerd" / "config.toml").write_text(f"""\
version = 2
root = "{f}/containerd/root"
state = "{f}/containerd/state"
oom_score = 0
# opt writes to /opt/containerd; the others only probe for what this machine lacks.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{self.containerd_socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{self.pause.ref}"
  # false fails every sandbox here: runc cannot lower oom_score_adj without CAP_SYS_RESOURCE
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{f}/cni/net.d"
    max_conf_num = 1
""")
        (f / "cni" / "net.d" / "10-zyra.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "zyra-pods",
            "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
                 "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]],
                          # without it pods have no route to the node IP
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": f"{f}/cni/ipam"}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }, indent=1))  # fmt: skip
        (f / "kubelet" / "resolv.conf").write_text(f"nameserver {NODE_IP}\n")
        (f / "kubelet" / "config.json").write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": "0.0.0.0", "port": 10250, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.ca.cert_path)}},
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(self.kubelet_serving.cert),
            "tlsPrivateKeyFile": str(self.kubelet_serving.key),
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "cgroupDriver": "cgroupfs", "cgroupRoot": self.cgroup_root, "cgroupsPerQOS": True,
            "clusterDNS": [NODE_IP], "clusterDomain": "cluster.local",
            "resolvConf": str(f / "kubelet" / "resolv.conf"),
            "failSwapOn": False,
            "oomScoreAdj": 0,  # no CAP_SYS_RESOURCE: a negative value is refused
            "protectKernelDefaults": False,
            # Imported images cannot be pulled again: never garbage-collect them.
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "nodefs.inodesFree": "1%", "imagefs.available": "1%"},
            "serializeImagePulls": False,
            "shutdownGracePeriod": "0s",
        }, indent=1))  # fmt: skip
        (f / "kube-proxy.json").write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(f / "kube-proxy.kubeconfig")},
            "mode": "iptables", "hostnameOverride": NODE_NAME, "bindAddress": "0.0.0.0",
            "clusterCIDR": POD_SUBNET,
            "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
            "nodePortAddresses": [f"{NODE_IP}/32"],
            "oomScoreAdj": 0,
            # Pods reach a Service backed by a pod on the same bridge without
            # br_netfilter only if the reply comes back through the node: SNAT them all.
            "iptables": {"masqueradeAll": True, "minSyncPeriod": "0s", "syncPeriod": "30s",
                         "localhostNodePorts": False},  # no route_localnet sysctl
            # 0 = leave the kernel's conntrack settings alone (nf_conntrack_max is global).
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                          "tcpCloseWaitTimeout": "0s", "udpTimeout": "0s",
                          "udpStreamTimeout": "0s"},
        }, indent=1))  # fmt: skip
        (f / "coredns" / "Corefile").write_text(f"""\
.:53 {{
    errors
    health 127.0.0.1:8080
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {f / "coredns.kubeconfig"} zyra-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
    loadbalance
}}
""")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "XDG_RUNTIME_DIR")}
        env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/local/sbin:/usr/sbin:/sbin"
        env["TMPDIR"] = str(self.folder / "tmp")  # containerd's temporary mounts
        return env

    # ------------------------------------------------------------------ start
    def _lap(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.timings[name] = round(now - since, 2)
        return now

    def start(self, timeout: float = 180) -> None:
        started = lap = time.monotonic()
        deadline = started + timeout
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pause = pause_image()
        lap = self._lap("pause image", lap)
        self._make_pki()
        self._write_configs()
        lap = self._lap("pki + configs", lap)
        self.namespace = ns = ClusterNamespace(
            self.folder, self.pause.binary.as_posix(), self._env()
        )
        ns.start(self._setup_script())
        lap = self._lap("namespaces", lap)

        b, f, logs = self.binaries, self.folder, self.logs
        ns.spawn("etcd", [
            b["etcd"], "--name", "default", "--data-dir", str(f / "etcd"),
            "--listen-client-urls", "http://127.0.0.1:2379",
            "--advertise-client-urls", "http://127.0.0.1:2379",
            "--listen-peer-urls", "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", "default=http://127.0.0.1:2380",
            "--unsafe-no-fsync",  # test data: durability is not worth the fsync latency
        ], logs / "etcd.log")  # fmt: skip
        ns.spawn("kube-apiserver", [
            b["kube-apiserver"], "--etcd-servers=http://127.0.0.1:2379",
            "--bind-address=0.0.0.0", f"--advertise-address={NODE_IP}",
            f"--secure-port={API_PORT}",
            f"--tls-cert-file={self.serving.cert}", f"--tls-private-key-file={self.serving.key}",
            f"--client-ca-file={self.ca.cert_path}",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.sa_public}",
            f"--service-account-signing-key-file={self.sa_private}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--kubelet-client-certificate={self.apiserver_kubelet.cert}",
            f"--kubelet-client-key={self.apiserver_kubelet.key}",
            f"--kubelet-certificate-authority={self.ca.cert_path}",
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false",
        ], logs / "kube-apiserver.log")  # fmt: skip
        ns.spawn("containerd", [
            "containerd", "--config", str(f / "containerd" / "config.toml")
        ], logs / "containerd.log")  # fmt: skip

        self.forwarders = Forwarders()
        api = self.forwarders.add(
            Endpoint("127.0.0.1", 0), Endpoint("127.0.0.1", API_PORT, ns.netns)
        )
        self.server = f"https://127.0.0.1:{api.port}"
        _write_kubeconfig(self.kubeconfig, self.server, self.ca.cert_path, self.admin, "admin")

        self._wait(lambda: self.containerd_socket.exists(), deadline, "containerd socket")
        self.import_image(self.pause.tarball)
        lap = self._lap("containerd up + pause imported", lap)
        remove_stale_cgroup_roots()
        self._make_cgroup_root()
        # The kubelet retries until the API server answers; starting it now overlaps its
        # own slow start-up (cAdvisor, container manager) with the API server's. The
        # others wait for it: on 2 cores, starting all at once made the start slower.
        ns.spawn("kubelet", [
            b["kubelet"], f"--config={f / 'kubelet' / 'config.json'}",
            f"--kubeconfig={f / 'kubelet.kubeconfig'}", f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}", f"--root-dir={f / 'kubelet' / 'root'}",
            f"--cert-dir={f / 'kubelet' / 'pki'}",
        ], logs / "kubelet.log")  # fmt: skip
        self._wait_api_ready(deadline)
        lap = self._lap("api server ready", lap)

        ns.spawn("kube-controller-manager", [
            b["kube-controller-manager"], f"--kubeconfig={f / 'controller-manager.kubeconfig'}",
            f"--controllers={','.join(NODE_CONTROLLERS)}",
            "--use-service-account-credentials",
            f"--service-account-private-key-file={self.sa_private}",
            f"--root-ca-file={self.ca.cert_path}",
            "--leader-elect=false", "--secure-port=0",
        ], logs / "kube-controller-manager.log")  # fmt: skip
        ns.spawn("kube-scheduler", [
            b["kube-scheduler"], f"--kubeconfig={f / 'scheduler.kubeconfig'}",
            "--leader-elect=false", "--secure-port=0",
        ], logs / "kube-scheduler.log")  # fmt: skip
        ns.spawn("kube-proxy", [
            b["kube-proxy"], f"--config={f / 'kube-proxy.json'}"
        ], logs / "kube-proxy.log")  # fmt: skip
        ns.spawn("coredns", [
            b["coredns"], "-conf", str(f / "coredns" / "Corefile")
        ], logs / "coredns.log")  # fmt: skip

        self._wait(self._node_ready, deadline, "node Ready")
        lap = self._lap("node ready", lap)
        self._wait(self._default_service_account, deadline, "default ServiceAccount")
        self._wait(lambda: _in_netns_http_ok(ns.netns, 8181, "/ready"), deadline, "CoreDNS ready")
        self._wait(lambda: _in_netns_http_ok(ns.netns, 10256, "/healthz"), deadline, "kube-proxy")
        self._lap("controllers, dns, proxy ready", lap)
        self.timings["start total"] = round(time.monotonic() - started, 2)

    def _make_cgroup_root(self) -> None:
        # The kubelet wants its cgroupRoot to exist in every v1 hierarchy. A new cpuset
        # cgroup starts with no CPUs and no memory nodes: give it the parent's.
        for hierarchy in CGROUP_FS.iterdir():
            if hierarchy.name == "unified" or not (hierarchy / "cgroup.procs").exists():
                continue
            root = hierarchy / self.cgroup_root.lstrip("/")
            root.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (root / name).exists():
                    (root / name).write_text((hierarchy / name).read_text())

    def _wait(self, ready: Callable[[], bool], deadline: float, what: str) -> None:
        assert self.namespace is not None
        while True:
            self.namespace.check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}; logs in {self.logs}")
            time.sleep(0.1)

    def _wait_api_ready(self, deadline: float) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca.cert_path))
        ctx.load_cert_chain(str(self.admin.cert), str(self.admin.key))

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=ctx, timeout=2) as r:
                    return r.read() == b"ok"  # early on: 500 with a per-check report
            except (urllib.error.URLError, OSError):
                return False

        self._wait(ready, deadline, "kube-apiserver /readyz")

    def _node_ready(self) -> bool:
        with self.api_client() as api:
            try:
                node = client.CoreV1Api(api).read_node(NODE_NAME)
            except client.ApiException as exc:
                if exc.status == 404:
                    return False
                raise
        conditions = node.status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    def _default_service_account(self) -> bool:
        with self.api_client() as api:
            try:
                client.CoreV1Api(api).read_namespaced_service_account("default", "default")
            except client.ApiException as exc:
                if exc.status == 404:
                    return False
                raise
        return True

    # ------------------------------------------------------------------ use
    def api_client(self) -> client.ApiClient:
        """An official-client ApiClient authenticated as cluster admin (host side)."""
        config = client.Configuration(host=self.server)
        config.ssl_ca_cert = str(self.ca.cert_path)
        config.cert_file, config.key_file = str(self.admin.cert), str(self.admin.key)
        return client.ApiClient(config)

    def kubectl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binaries["kubectl"], f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def import_image(self, tarball: Path, timeout: float = 600) -> float:
        """`ctr -n k8s.io images import` (OCI layout or docker-archive, e.g. `podman save`)
        into the node's containerd; pods then use it with imagePullPolicy Never or
        IfNotPresent. Returns the seconds it took."""
        started = time.monotonic()
        done = subprocess.run(
            ["ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io",
             "images", "import", str(tarball)],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"ctr import {tarball} failed:\n{done.stdout}{done.stderr}")
        return time.monotonic() - started

    def expose(self, host_port: int, host: str = "127.0.0.1") -> tuple[str, int]:
        """Make host `host:host_port` reachable from pods; returns (node IP, port)."""
        assert self.forwarders is not None and self.namespace is not None
        if (host, host_port) in self._exposed:
            return self._exposed[host, host_port]
        target = Endpoint(host, host_port)
        for port in (host_port, 0):  # same number unless a cluster daemon has it
            try:
                listen = self.forwarders.add(Endpoint(NODE_IP, port, self.namespace.netns), target)
                self._exposed[host, host_port] = NODE_IP, listen.port
                return NODE_IP, listen.port
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise AssertionError("unreachable")

    def describe_all(self, namespace: str) -> str:
        """Everything a person would look at when a test in `namespace` fails."""
        parts = []
        for args in (
            ("get", "all,events", "-o", "wide", "-n", namespace),
            ("describe", "pods", "-n", namespace),
        ):
            done = self.kubectl(*args)
            parts.append(f"$ kubectl {' '.join(args)}\n{done.stdout}{done.stderr}")
        names = self.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.split()
        for pod in names:
            done = self.kubectl("logs", "-n", namespace, pod, "--all-containers", "--tail=200")
            parts.append(f"$ kubectl logs {pod}\n{done.stdout}{done.stderr}")
        return "\n".join(parts)

    def netns_run(self, *argv: str) -> str:
        """A command inside the cluster's namespaces (e.g. iptables-save); its stdout."""
        assert self.namespace is not None
        done = self.namespace.run(list(argv))
        return done.stdout + done.stderr

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        started = time.monotonic()
        if self.forwarders is not None:
            self.forwarders.close()
            self.forwarders = None
        try:
            if self.namespace is not None:
                self.namespace.stop()
        finally:
            # cgroupfs cgroups are the one thing made outside the namespaces (no cgroup
            # ns): the kubelet's and runc's tree under cgroupRoot, in every hierarchy.
            deadline = time.monotonic() + 20
            for hierarchy in CGROUP_FS.iterdir():
                tree = hierarchy / self.cgroup_root.lstrip("/")
                with contextlib.suppress(FileNotFoundError):
                    _remove_cgroup_tree(tree, deadline)
        self.timings["stop"] = round(time.monotonic() - started, 2)
