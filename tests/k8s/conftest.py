"""Session fixtures: a real Kubernetes control plane and a node agent playing the kubelet."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.k8s.cluster import ControlPlane, k8s_binaries
from tests.k8s.node_agent import NodeAgent

BINARIES = pytest.StashKey[dict[str, str]]()
TIMINGS = pytest.StashKey[dict[str, float]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Build or restore the binaries here, outside any test: a cold build (~15 min) would
    # otherwise count against the per-test pytest-timeout of the first k8s test.
    if config.option.collectonly or BINARIES in config.stash:
        return
    if not any("control_plane" in getattr(item, "fixturenames", ()) for item in items):
        return
    started = time.monotonic()
    config.stash[BINARIES] = k8s_binaries()
    config.stash[TIMINGS] = {"binaries": time.monotonic() - started}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    timings = terminalreporter.config.stash.get(TIMINGS, {})
    if timings:
        parts = [f"{name} {seconds:.1f}s" for name, seconds in timings.items()]
        terminalreporter.write_line("k8s timings: " + ", ".join(parts))


@pytest.fixture(scope="session")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[ControlPlane]:
    binaries = pytestconfig.stash.get(BINARIES, None) or k8s_binaries()
    plane = ControlPlane(tmp_path_factory.mktemp("k8s"), binaries)
    timings = pytestconfig.stash.setdefault(TIMINGS, {})
    try:
        plane.start()
        timings["control-plane start (to ready + default SA)"] = plane.start_seconds
        yield plane
    finally:
        started = time.monotonic()
        plane.stop()
        timings["control-plane stop"] = time.monotonic() - started


@pytest.fixture(scope="session")
def node_agent(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeAgent]:
    agent = NodeAgent(control_plane, tmp_path_factory.mktemp("node"))
    agent.start()
    yield agent
    agent.stop()


@pytest.fixture
def k8s_client(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    """An official-client ApiClient authenticated as cluster admin."""
    with control_plane.api_client() as api_client:
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
