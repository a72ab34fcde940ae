"""The chart installed the way an operator installs it: `helm install` with the dev values
(its own Redis and MinIO as pods, runner Jobs from the runner image), `helm test`, and a
`kubectl port-forward` to the API's Service on a free local port.

Beside the release, one small server of the tests' own (slow_server.py, run from the
runner image): what `acquire http` fetches in tests of jobs that must still be running
when something happens to them. The release is told to allow it (`config.outboundAllow`,
`networkPolicy.extraEgress`), as an operator allows an in-cluster data source. And one
volume of input data (`inputData`: a ConfigMap holding `field.npy`, mounted at /data), as
an operator offers a shared archive that commands name by path.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.deploy.chart import CHART
from tests.k8s.e2e.fields import small_field
from tests.k8s.e2e.kubectl import Kubectl, KubectlError
from tests.k8s.e2e.port_forward import PortForward
from tools.images.chart import ChartImages

RELEASE = "zyra"
DEV_VALUES = CHART / "examples" / "values-dev.yaml"
E2E_VALUES = Path(__file__).with_name("values-e2e.yaml")
SLOW = "zyra-e2e-slow"
SLOW_SERVER = Path(__file__).with_name("slow_server.py")
INPUT_DATA = "zyra-e2e-input"
INPUT_MOUNT = "/data"
# The release's API image: the production image (the chart's appVersion), or the dev
# values' own (`dev`, what `skaffold dev` deploys).
API_TAGS = {"dev": "dev", "production": ChartImages.defaults().api.rsplit(":", 1)[1]}
INSTALL_TIMEOUT = "6m"


class ReleaseError(RuntimeError):
    pass


def dev_api_key() -> str:
    """The dev values' API key (`dev: local-dev-key`)."""
    keys = yaml.safe_load(DEV_VALUES.read_text())["apiKeys"]["keys"]
    return str(next(iter(keys.values()))).split()[0]


@dataclass
class Release:
    """What a client of the installed service needs, and the operator's tools."""

    name: str
    namespace: str
    kubectl: Kubectl
    forward: PortForward
    api_key: str
    helm_test_log: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.forward.url

    @property
    def service(self) -> str:
        return f"{self.name}-zyra-orchestrator"

    @property
    def api_selector(self) -> str:
        return f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component=api"

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.api_key},
                            timeout=timeout)  # fmt: skip

    def slow_url(self, seconds: float) -> str:
        """A URL runner pods may fetch, answered after `seconds`."""
        return f"http://{slow_host(self.namespace)}/delay/{seconds:g}"

    def diagnostics(self) -> str:
        return (f"{self.kubectl.describe_all()}\n--- kubectl port-forward log\n"
                f"{self.forward.output()}")  # fmt: skip


def slow_host(namespace: str) -> str:
    return f"{SLOW}.{namespace}.svc.cluster.local"


def release_values(namespace: str, api_tag: str) -> dict[str, Any]:
    """The values that depend on this install: the API image's tag, and the slow
    server allowed as a destination of runner pods."""
    return {
        "image": {"tag": api_tag},
        "config": {"outboundAllow": [slow_host(namespace)]},
        "networkPolicy": {"extraEgress": [{
            "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": SLOW}}}],
            "ports": [{"protocol": "TCP", "port": 8080}],
        }]},
        "inputData": {"mountPath": INPUT_MOUNT, "volume": {"configMap": {"name": INPUT_DATA}}},
    }  # fmt: skip


def input_data_manifest() -> dict[str, Any]:
    """The input data volume's content: made before the release, as an operator's is."""
    field = base64.b64encode(small_field()).decode()
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": INPUT_DATA},
            "binaryData": {"field.npy": field}}  # fmt: skip


def slow_server_manifests(runner_image: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": SLOW}
    restricted = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                  "seccompProfile": {"type": "RuntimeDefault"}}  # fmt: skip
    container = {
        "name": "server", "image": runner_image, "imagePullPolicy": "Never",
        "command": ["python", "/srv/slow_server.py"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                      "limits": {"cpu": "200m", "memory": "128Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "script", "mountPath": "/srv", "readOnly": True}],
    }  # fmt: skip
    items = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": SLOW, "labels": labels},
         "data": {"slow_server.py": SLOW_SERVER.read_text()}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": SLOW, "labels": labels},
         "spec": {"automountServiceAccountToken": False, "securityContext": restricted,
                  "terminationGracePeriodSeconds": 1, "containers": [container],
                  "volumes": [{"name": "script", "configMap": {"name": SLOW}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SLOW, "labels": labels},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]}},
    ]  # fmt: skip
    return {"apiVersion": "v1", "kind": "List", "items": items}


def _lap(timings: dict[str, float], name: str, since: float) -> float:
    now = time.monotonic()
    timings[name] = round(now - since, 1)
    return now


def install(kubectl: Kubectl, helm: str, workdir: Path, api_image: str = "production") -> Release:
    """Install the chart into kubectl's namespace, pass `helm test`, start the slow
    server and the port-forward. ReleaseError (with the namespace's state) on failure."""
    timings: dict[str, float] = {}
    ns = kubectl.namespace

    def helm_run(*args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [helm, f"--kubeconfig={kubectl.kubeconfig}", "-n", ns, *args],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            raise ReleaseError(f"helm {' '.join(args)} exited {done.returncode}:\n"
                               f"{done.stdout}{done.stderr}\n{kubectl.describe_all()}")  # fmt: skip
        return done.stdout

    values = workdir / "values-release.json"
    values.write_text(json.dumps(release_values(ns, API_TAGS[api_image]), indent=1))
    input_data = workdir / "input-data.json"
    input_data.write_text(json.dumps(input_data_manifest()))
    kubectl.run("apply", "-f", str(input_data))
    lap = time.monotonic()
    helm_run("install", RELEASE, str(CHART), "-f", str(DEV_VALUES), "-f", str(E2E_VALUES),
             "-f", str(values), "--wait", "--timeout", INSTALL_TIMEOUT)  # fmt: skip
    lap = _lap(timings, "helm install --wait", lap)
    helm_test_log = helm_run("test", RELEASE, "--logs", "--timeout", INSTALL_TIMEOUT)
    lap = _lap(timings, "helm test", lap)

    runner = ChartImages.defaults().runner.removeprefix("docker.io/library/")
    manifests = workdir / "slow-server.json"
    manifests.write_text(json.dumps(slow_server_manifests(runner), indent=1))
    kubectl.run("apply", "-f", str(manifests))
    _wait(lambda: _ready(kubectl, f"pod/{SLOW}"), 120, "the slow server", kubectl)
    lap = _lap(timings, "slow server ready", lap)

    forward = PortForward(kubectl, f"svc/{RELEASE}-zyra-orchestrator", 8000,
                          workdir / "port-forward.log")  # fmt: skip
    release = Release(RELEASE, ns, kubectl, forward, dev_api_key(), helm_test_log, timings)
    forward.start()
    try:
        forward.wait_answering("/readyz", timeout=60)
    except RuntimeError as exc:
        forward.stop()
        raise ReleaseError(f"{exc}\n{kubectl.describe_all()}") from exc
    _lap(timings, "port-forward answering", lap)
    return release


def _ready(kubectl: Kubectl, resource: str) -> bool:
    try:
        conditions = kubectl.get(resource).get("status", {}).get("conditions") or []
    except KubectlError:
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _wait(ready: Callable[[], bool], timeout: float, what: str, kubectl: Kubectl) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise ReleaseError(f"{what} not ready in {timeout}s\n{kubectl.describe_all()}")
        time.sleep(0.5)


def uninstall(kubectl: Kubectl, helm: str) -> None:
    subprocess.run(
        [helm, f"--kubeconfig={kubectl.kubeconfig}", "-n", kubectl.namespace, "uninstall",
         RELEASE, "--wait", "--timeout", "2m"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
