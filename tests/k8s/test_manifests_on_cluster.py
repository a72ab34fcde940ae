"""k8s/ (kustomize base and dev overlay): generated from the chart and still equal
to it, built by the real kubectl kustomize, admitted by the real API server (the
session's cluster)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.deploy.chart import render
from tests.k8s.real_cluster import RealCluster
from tests.services import REPO

GENERATOR = REPO / "tools" / "manifests" / "render-k8s-base.py"
BASE, DEV = REPO / "k8s" / "base", REPO / "k8s" / "overlays" / "dev"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_k8s_base", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kustomize(cluster: RealCluster, folder: object) -> list[dict[str, Any]]:
    done = cluster.kubectl("kustomize", str(folder))
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_key(resources: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["kind"], r["metadata"]["name"]): r for r in resources}


@pytest.fixture(scope="module")
def namespaces(cluster: RealCluster) -> Iterator[None]:
    """The namespaces the base and the overlay install into (deleting one takes a
    while, so once for the module)."""
    names = ("zyra-orchestrator", "zyra-dev")
    for name in names:
        done = cluster.kubectl("create", "namespace", name)
        assert done.returncode == 0, done.stderr
    yield
    cluster.kubectl("delete", "namespace", "--wait=false", *names)


def test_base_is_what_the_generator_writes_from_the_chart() -> None:
    done = subprocess.run([sys.executable, str(GENERATOR), "--check"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_kustomized_base_equals_the_chart_defaults(cluster: RealCluster) -> None:
    plain = _generator().plain
    chart = render(release="zyra-orchestrator", namespace="zyra-orchestrator",
                   extra=["--skip-tests"])  # fmt: skip
    expected = {k: plain(r) for k, r in by_key(chart.resources).items() if k[0] != "Secret"}
    built = by_key(kustomize(cluster, BASE))
    assert built.keys() == expected.keys()
    for key, resource in built.items():
        assert resource["metadata"].pop("namespace") == "zyra-orchestrator", key
        assert resource == expected[key], key


def test_dev_overlay_is_self_contained_in_its_namespace(cluster: RealCluster) -> None:
    built = by_key(kustomize(cluster, DEV))
    assert {r["metadata"]["namespace"] for r in built.values()} == {"zyra-dev"}
    assert ("PodDisruptionBudget", "zyra-orchestrator") not in built
    deployment = built["Deployment", "zyra-orchestrator"]
    assert deployment["spec"]["replicas"] == 1
    container, sync = deployment["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "api" and container["image"] == "zyra-orchestrator-api:dev"
    assert sync["name"] == "sync-executor" and sync["image"] == "zyra-orchestrator-runner:dev"
    [subject] = built["RoleBinding", "zyra-orchestrator"]["subjects"]
    assert subject == {"kind": "ServiceAccount", "name": "zyra-orchestrator",
                       "namespace": "zyra-dev"}  # fmt: skip
    config = built["ConfigMap", "zyra-orchestrator"]["data"]
    assert config["ZYRA_K8S__NAMESPACE"] == "zyra-dev"
    assert config["ZYRA_K8S__IMAGE"] == "zyra-orchestrator-runner:dev"
    # Every Secret the API pod reads is generated, with its key (runner Jobs read none:
    # each run gets a Secret of its own from the API).
    refs = [var["valueFrom"]["secretKeyRef"] for var in container["env"]]
    assert not [k for k in config if k.endswith("_SECRET")]
    for ref in refs:
        assert ref["key"] in built["Secret", ref["name"]]["data"], ref


@pytest.mark.parametrize("folder", [BASE, DEV], ids=["base", "dev"])
@pytest.mark.usefixtures("namespaces")
def test_kubectl_apply_k_passes_server_side_dry_run(folder: object, cluster: RealCluster) -> None:
    done = cluster.kubectl("apply", "-k", str(folder), "--dry-run=server", timeout=60)
    assert done.returncode == 0, done.stderr
    expected = len(kustomize(cluster, folder))
    assert done.stdout.count("(server dry run)") == expected, done.stdout
