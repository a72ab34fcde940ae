"""The API pod deleted while a runner Job works: the Job goes on, and the API pod the
Deployment starts instead settles the job (its watcher lists the runner pods again)."""

from __future__ import annotations

import pytest

from tests.k8s.e2e.release import Release
from tests.k8s.e2e.slow_server import body_for
from tests.k8s.e2e.user import download, submit, wait_finished, wait_status

pytestmark = pytest.mark.timeout(300, func_only=True)


def test_a_job_settles_though_the_api_pod_is_deleted_mid_job(deployment: Release) -> None:
    kubectl = deployment.kubectl
    with deployment.client() as client:
        job_id = submit(client, "acquire", "http",
                        {"url": deployment.slow_url(30), "output": "answer.txt"})  # fmt: skip
        wait_status(client, job_id, "running")
    [old] = kubectl.pod_names(deployment.api_selector)
    kubectl.run("delete", "pod", old, "--wait=false")
    kubectl.run("wait", "--for=delete", f"pod/{old}", "--timeout=120s", timeout=150)
    running = kubectl.run("get", "pods", "-l", f"zyra.job-id={job_id}", "-o",
                          "jsonpath={.items[*].status.phase}")  # fmt: skip
    assert running == "Running", "the runner pod should outlive the API pod"
    kubectl.run("rollout", "status", f"deploy/{deployment.service}", "--timeout=180s",
                timeout=200)  # fmt: skip
    deployment.forward.wait_answering("/readyz", timeout=120)
    [new] = kubectl.pod_names(deployment.api_selector)
    assert new != old
    with deployment.client() as client:
        record = wait_finished(client, job_id, timeout_s=120)
        assert (record["status"], record["exit_code"]) == ("succeeded", 0), record
        assert download(client, job_id) == body_for(30)
