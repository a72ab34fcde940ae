"""Session fixtures: one whole cluster with a real node (`cluster`) for the session, the
project's runner image imported into it once, and a fresh namespace per test."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.e2e.conftest import ApiServer
from tests.k8s.real_cluster import RealCluster, node_binaries, short_folder
from tests.k8s.static_images import probe_image
from tools.images.chart import ChartImages

NODE_BINARIES = pytest.StashKey[dict[str, str]]()
TIMINGS = pytest.StashKey[dict[str, float]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Build or restore the binaries here, outside any test: a cold build (~15 min) would
    # otherwise count against the per-test pytest-timeout of the first k8s test.
    if config.option.collectonly or TIMINGS in config.stash:
        return
    wanted = {name for item in items for name in getattr(item, "fixturenames", ())}
    timings = config.stash.setdefault(TIMINGS, {})
    if wanted & {"cluster", "node_tools"}:
        started = time.monotonic()
        config.stash[NODE_BINARIES] = node_binaries()
        timings["node binaries"] = time.monotonic() - started


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    timings = terminalreporter.config.stash.get(TIMINGS, {})
    if timings:
        parts = [f"{name} {seconds:.1f}s" for name, seconds in timings.items()]
        terminalreporter.write_line("k8s timings: " + ", ".join(parts))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    # A failing test's report gets what a person would look at: its namespace in the
    # cluster (resources, events, pod logs) and the end of its API's log.
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    args = getattr(item, "funcargs", {})
    real, namespace = args.get("cluster"), args.get("namespace")
    if isinstance(real, RealCluster) and isinstance(namespace, str):
        report.sections.append((f"namespace {namespace}", real.describe_all(namespace)))
    for name, value in args.items():
        if isinstance(value, ApiServer) and value.log_path.exists():
            log = value.log_path.read_text(errors="replace")[-6000:]
            report.sections.append((f"{name}: {value.log_path}", log))


@pytest.fixture(scope="session")
def node_tools(pytestconfig: pytest.Config) -> dict[str, str]:
    """Every binary a cluster with a real node runs (built in the collection hook)."""
    return pytestconfig.stash.get(NODE_BINARIES, None) or node_binaries()


@pytest.fixture(scope="session")
def probe_ref() -> str:
    """The probe image (tests/k8s/images/probe), built from Go when its source changed."""
    return probe_image().ref


@pytest.fixture
def cluster_folder() -> Iterator[Path]:
    """A short folder for a test's own cluster (tmp_path can be too long for it)."""
    with short_folder("k8s-test") as folder:
        yield folder


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config, node_tools: dict[str, str]) -> Iterator[RealCluster]:
    """The session's cluster with a real node, the probe image imported."""
    timings = pytestconfig.stash.setdefault(TIMINGS, {})
    with short_folder("k8s") as folder:
        real = RealCluster(folder, node_tools)
        # Started under the umask an in-process API leaves in the test process (077):
        # the node's daemons set their own, or no non-root container could start.
        found = os.umask(0o077)
        try:
            real.start()
            os.umask(found)
            timings["real node start"] = real.timings["start total"]
            timings["probe image import"] = real.import_image(probe_image().tarball)
            yield real
        finally:
            os.umask(found)
            real.stop()
            timings["real node stop"] = real.timings["stop"]


@pytest.fixture(scope="session")
def runner_image(
    cluster: RealCluster, image_tarballs: dict[str, Path], pytestconfig: pytest.Config
) -> str:
    """The project's runner image (Dockerfile.runner) in the node's containerd, imported
    once a session (~50 s): its reference, as the chart's defaults name it."""
    seconds = cluster.import_image(image_tarballs["zyra-orchestrator-runner"])
    pytestconfig.stash.setdefault(TIMINGS, {})["runner image import"] = seconds
    return ChartImages.defaults().runner


@pytest.fixture
def k8s_client(cluster: RealCluster) -> Iterator[client.ApiClient]:
    """An official-client ApiClient authenticated as cluster admin."""
    with cluster.api_client() as api_client:
        yield api_client


@pytest.fixture
def namespace(k8s_client: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, usable once its default ServiceAccount exists."""
    core = client.CoreV1Api(k8s_client)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except client.ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    yield name
    core.delete_namespace(name)
