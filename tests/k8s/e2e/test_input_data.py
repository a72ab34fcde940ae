"""Input data named by path (`inputData`): the same file read by sync runs in the API pod
and by async runs in runner Jobs, and never written by either."""

from __future__ import annotations

import pytest

from tests.k8s.e2e.fields import small_field
from tests.k8s.e2e.release import INPUT_MOUNT, Release
from tests.k8s.e2e.user import (
    NO_MAP_FEATURES,
    PNG_MAGIC,
    download,
    run_sync,
    submit,
    upload,
    wait_finished,
)

pytestmark = pytest.mark.timeout(300, func_only=True)

HEATMAP = {"width": 240, "height": 120, **NO_MAP_FEATURES}


def test_sync_and_async_runs_read_the_same_file_from_the_data_volume(
    deployment: Release,
) -> None:
    with deployment.client() as client:
        by_path = {"input": f"{INPUT_MOUNT}/field.npy", "output": "map.png", **HEATMAP}
        sync = run_sync(client, "visualize", "heatmap", by_path)
        assert (sync["status"], sync["exit_code"]) == ("succeeded", 0), sync
        job_id = submit(client, "visualize", "heatmap", by_path)
        done = wait_finished(client, job_id)
        assert (done["status"], done["exit_code"]) == ("succeeded", 0), done
        # The same field uploaded: the volume's file is what the tests put there.
        file_id = upload(client, "field.npy", small_field())
        uploaded = run_sync(client, "visualize", "heatmap",
                            {**by_path, "input": f"file_id:{file_id}"})  # fmt: skip
        pngs = [download(client, run) for run in (sync["job_id"], job_id, uploaded["job_id"])]
    assert pngs[0].startswith(PNG_MAGIC)
    assert pngs[0] == pngs[1] == pngs[2]


def test_no_run_writes_into_the_data_volume(deployment: Release) -> None:
    """The path policy allows /data for reading; the mount, not the policy, stops writes."""
    evil = {"input": f"{INPUT_MOUNT}/field.npy", "output": f"{INPUT_MOUNT}/evil.png", **HEATMAP}
    with deployment.client() as client:
        sync = run_sync(client, "visualize", "heatmap", evil)
        job_id = submit(client, "visualize", "heatmap", evil)
        done = wait_finished(client, job_id)
    assert sync["status"] == "failed" and sync["exit_code"] != 0, sync
    assert done["status"] == "failed" and done["exit_code"] != 0, done
    for record in (sync, done):
        assert "Read-only file system" in record["stderr"] or "denied" in record["stderr"], record
    listed = deployment.kubectl.run("exec", f"deploy/{deployment.service}", "-c",
                                    "sync-executor", "--", "ls", "-A", INPUT_MOUNT)  # fmt: skip
    assert [name for name in listed.split() if not name.startswith("..")] == ["field.npy"]


def test_a_path_outside_the_data_volume_is_refused_naming_the_argument(
    deployment: Release,
) -> None:
    with deployment.client() as client:
        response = client.post("/cli/run", json={
            "stage": "visualize", "command": "heatmap", "mode": "async",
            "args": {"input": "/var/run/secrets/kubernetes.io/serviceaccount/token",
                     "output": "x.png"},
        })  # fmt: skip
    assert response.status_code == 422, response.text
    assert "input" in response.text and INPUT_MOUNT in response.text, response.text
