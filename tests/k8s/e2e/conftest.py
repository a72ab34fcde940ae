"""The chart installed on a real cluster, reached as a user reaches it: `deployment`.

Which cluster:
- ZYRA_E2E_KUBECONFIG set: that cluster (kind, k3d, a real one), whose nodes already
  have the images the release uses (scripts/kind-e2e.sh loads them). The release goes
  into ZYRA_E2E_NAMESPACE, or a new namespace that is deleted at the end.
- unset: the session's own cluster (`cluster`, tests/k8s/real_cluster.py), with the
  project's images (tools/images/build.py) imported into its node's containerd.

ZYRA_E2E_API_IMAGE picks the API image: production (default: its inputs are the
application's, so editing tests does not rebuild it) or dev (the dev values' own image, as
`skaffold dev` deploys them; it holds tests/ and scripts/ too). A failing test gets the
namespace's resources, events, pod descriptions and every container's log in its report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.chart import helm_binary
from tests.k8s.cluster import k8s_binaries
from tests.k8s.e2e.image_store import import_images
from tests.k8s.e2e.kubectl import Kubectl
from tests.k8s.e2e.release import API_TAGS, Release, install, uninstall

TIMINGS = pytest.StashKey[dict[str, float]]()


def api_image() -> str:
    name = os.environ.get("ZYRA_E2E_API_IMAGE", "production")
    if name not in API_TAGS:
        raise pytest.UsageError(f"ZYRA_E2E_API_IMAGE must be one of {sorted(API_TAGS)}")
    return name


def images_needed(api: str) -> list[str]:
    """tools/images/build.py names of the images the release runs."""
    return [
        "zyra-orchestrator-api-dev" if api == "dev" else "zyra-orchestrator-api",
        "zyra-orchestrator-runner",
        "redis",
        "minio",
    ]


@pytest.fixture(scope="session")
def deployment(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[Release]:
    timings = pytestconfig.stash.setdefault(TIMINGS, {})
    workdir = tmp_path_factory.mktemp("release")
    api = api_image()
    external = os.environ.get("ZYRA_E2E_KUBECONFIG")
    own_namespace = True
    if external:
        binary = shutil.which("kubectl") or k8s_binaries()["kubectl"]
        namespace = os.environ.get("ZYRA_E2E_NAMESPACE") or f"zyra-e2e-{uuid.uuid4().hex[:6]}"
        own_namespace = "ZYRA_E2E_NAMESPACE" not in os.environ
        kubectl = Kubectl(binary, Path(external), namespace)
        if own_namespace:
            kubectl.run("create", "namespace", namespace)
    else:
        # Asked for here, not as a parameter: an external cluster needs neither it nor
        # the images built here.
        cluster = request.getfixturevalue("cluster")
        timings["cluster start"] = cluster.timings.get("start total", 0.0)
        timings.update(import_images(cluster, images_needed(api)))
        namespace = f"zyra-e2e-{uuid.uuid4().hex[:6]}"
        kubectl = Kubectl(cluster.binaries["kubectl"], cluster.kubeconfig, namespace)
        kubectl.run("create", "namespace", namespace)
    helm = helm_binary()
    release: Release | None = None
    try:
        release = install(kubectl, helm, workdir, api)
        timings.update(release.timings)
        yield release
    finally:
        if release is not None:
            release.forward.stop()
        if external:
            started = time.monotonic()
            uninstall(kubectl, helm)
            if own_namespace:
                subprocess.run(
                    [*kubectl.argv("delete", "namespace", namespace, "--wait=false")],
                    capture_output=True, timeout=60,
                )  # fmt: skip
            timings["uninstall"] = round(time.monotonic() - started, 1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    release = getattr(item, "funcargs", {}).get("deployment")
    if report.failed and isinstance(release, Release):
        report.sections.append(("the release's namespace (kubectl)", release.diagnostics()))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    timings = terminalreporter.config.stash.get(TIMINGS, {})
    if timings:
        parts = [f"{name} {seconds:.1f}s" for name, seconds in timings.items()]
        terminalreporter.write_line("k8s e2e timings: " + ", ".join(parts))
