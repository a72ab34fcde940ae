"""How runner Jobs end other than by succeeding, as the API reports it: cancelled by
the user, killed by the kernel over the run's memory limit, stopped at the Job's
deadline. Long runs fetch from the slow server (release.py)."""

from __future__ import annotations

import time

import pytest

from tests.k8s.e2e.fields import small_field
from tests.k8s.e2e.release import Release
from tests.k8s.e2e.user import (
    NO_MAP_FEATURES,
    submit,
    upload,
    wait_finished,
    wait_status,
)

pytestmark = pytest.mark.timeout(300, func_only=True)


def test_cancel_of_a_running_job_ends_it_and_its_kubernetes_job(deployment: Release) -> None:
    with deployment.client() as client:
        job_id = submit(client, "acquire", "http",
                        {"url": deployment.slow_url(600), "output": "never.txt"})  # fmt: skip
        wait_status(client, job_id, "running")
        started = time.monotonic()
        response = client.delete(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        assert response.json()["cancelled"] is True
        record = wait_finished(client, job_id, timeout_s=60)
        took = time.monotonic() - started
    assert (record["status"], record["reason"]) == ("cancelled", "Cancelled"), record
    assert took < 30, f"cancel took {took:.1f}s"
    deadline = time.monotonic() + 60
    while (left := deployment.kubectl.run(
        "get", "jobs,pods", "-l", f"zyra.job-id={job_id}", "-o", "name"
    ).split()) and time.monotonic() < deadline:  # fmt: skip
        time.sleep(0.5)
    assert left == [], "the Job or its pod is still there"


def test_a_run_over_its_memory_limit_ends_oomkilled(deployment: Release) -> None:
    with deployment.client() as client:
        file_id = upload(client, "field.npy", small_field())
        args = {"input": f"file_id:{file_id}", "output": "map.png", **NO_MAP_FEATURES}
        memory = {"memory": "512Mi"}
        # The same command fits the limit at a small size ...
        small = submit(client, "visualize", "heatmap", {**args, "width": 240, "height": 120},
                       resources=memory)  # fmt: skip
        record = wait_finished(client, small)
        assert (record["status"], record["exit_code"]) == ("succeeded", 0), record
        # ... and not at 12000 x 12000 pixels (a 576 MB RGBA canvas alone).
        big = submit(client, "visualize", "heatmap", {**args, "width": 12000, "height": 12000},
                     resources=memory)  # fmt: skip
        record = wait_finished(client, big)
    assert (record["status"], record["exit_code"], record["reason"]) == (
        "failed", 137, "OOMKilled"
    ), record  # fmt: skip
    limits = deployment.kubectl.get(f"job/zyra-{big}")["spec"]["template"]["spec"][
        "containers"][0]["resources"]["limits"]  # fmt: skip
    assert limits["memory"] == "512Mi"


def test_a_run_past_its_jobs_deadline_ends_deadline_exceeded(deployment: Release) -> None:
    with deployment.client() as client:
        job_id = submit(client, "acquire", "http",
                        {"url": deployment.slow_url(600), "output": "never.txt"},
                        timeout_s=5)  # fmt: skip
        record = wait_finished(client, job_id, timeout_s=120)
    assert (record["status"], record["reason"]) == ("failed", "DeadlineExceeded"), record
    job = deployment.kubectl.get(f"job/zyra-{job_id}")
    assert job["spec"]["activeDeadlineSeconds"] == 5
    reasons = [c.get("reason") for c in job["status"].get("conditions") or []]
    assert "DeadlineExceeded" in reasons, job["status"]
