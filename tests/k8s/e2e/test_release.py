"""The release as `helm install` + `helm test` left it, reached through the port-forward."""

from __future__ import annotations

import httpx
import pytest

from tests.k8s.e2e.release import Release

pytestmark = pytest.mark.timeout(300, func_only=True)


def test_helm_test_ran_a_sync_run_and_a_runner_job(deployment: Release) -> None:
    log = deployment.helm_test_log
    assert "smoke test passed" in log, log
    assert "sync: job" in log and "async: job" in log, log


def test_the_api_answers_through_the_port_forward(deployment: Release) -> None:
    with deployment.client() as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        commands = client.get("/cli/commands")
        assert commands.status_code == 200
        assert "heatmap" in str(commands.json()), "visualize heatmap not offered"
    assert httpx.get(f"{deployment.url}/jobs", timeout=30).status_code == 401  # no key


def test_every_pod_of_the_release_is_ready_and_never_restarted(deployment: Release) -> None:
    pods = deployment.kubectl.get("pods", "-l", f"app.kubernetes.io/instance={deployment.name}")
    seen = {}
    for pod in pods["items"]:
        statuses = pod["status"].get("containerStatuses") or []
        seen[pod["metadata"]["name"]] = [(s["name"], s["ready"], s["restartCount"])
                                         for s in statuses]  # fmt: skip
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods["items"]}
    assert {"api", "redis", "minio"} <= components, seen
    for name, containers in seen.items():
        assert containers and all(ready and restarts == 0 for _c, ready, restarts in containers), (
            f"{name}: {containers}"
        )
