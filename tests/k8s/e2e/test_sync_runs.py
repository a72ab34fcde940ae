"""A sync run: a real Zyra command forked in the API pod's sync-executor container."""

from __future__ import annotations

import hashlib

import pytest

from tests.k8s.e2e.fields import small_field
from tests.k8s.e2e.release import Release
from tests.k8s.e2e.user import (
    NO_MAP_FEATURES,
    PNG_MAGIC,
    download,
    run_sync,
    upload,
)

pytestmark = pytest.mark.timeout(300, func_only=True)


def test_a_sync_heatmap_of_an_upload_answers_with_its_png(deployment: Release) -> None:
    with deployment.client() as client:
        file_id = upload(client, "field.npy", small_field())
        args = {"input": f"file_id:{file_id}", "output": "heatmap.png", "width": 240,
                "height": 120, **NO_MAP_FEATURES}  # fmt: skip
        result = run_sync(client, "visualize", "heatmap", args)
        assert (result["status"], result["exit_code"], result["reason"]) == (
            "succeeded", 0, "Completed"
        ), result  # fmt: skip
        [output] = result["outputs"]
        assert output["name"] == "heatmap.png"
        png = download(client, result["job_id"])
    assert png.startswith(PNG_MAGIC)
    assert (len(png), hashlib.sha256(png).hexdigest()) == (output["size"], output["sha256"])
    # It ran in the API pod: no runner Job was made for it.
    jobs = deployment.kubectl.run("get", "jobs", "-l", f"zyra.job-id={result['job_id']}",
                                  "-o", "name")  # fmt: skip
    assert jobs.strip() == ""
