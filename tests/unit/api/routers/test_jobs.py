from __future__ import annotations

from fastapi.testclient import TestClient

# Its input does not exist: it fails, and its own staged copy is no output.
HEATMAP_OF_NOTHING = {"input": "missing.npy", "output": "map.png"}
FAILING_PIPELINE = {
    "stages": [{"stage": "visualize", "command": "heatmap", "args": HEATMAP_OF_NOTHING}]
}


def test_unknown_job_is_404(app_client: TestClient) -> None:
    r = app_client.get("/jobs/0123456789abcdef")
    assert r.status_code == 404
    assert "0123456789abcdef" in r.json()["detail"]


def test_download_of_a_job_without_outputs_is_404_with_a_reason(app_client: TestClient) -> None:
    run = app_client.post(
        "/cli/run", json={"stage": "run", "args": {"config": FAILING_PIPELINE}}
    ).json()
    assert run["exit_code"] != 0 and run["outputs"] == []
    r = app_client.get(f"/jobs/{run['job_id']}/download")
    assert r.status_code == 404
    assert r.json()["detail"] == "this job produced no outputs"


def test_download_name_must_be_one_of_the_jobs_outputs(app_client: TestClient) -> None:
    run = app_client.post(
        "/cli/run", json={"stage": "run", "args": {"config": FAILING_PIPELINE}}
    ).json()
    r = app_client.get(f"/jobs/{run['job_id']}/download", params={"file": "../../jobs.sqlite3"})
    assert r.status_code == 404


def test_listing_with_an_unknown_stage_is_422(app_client: TestClient) -> None:
    r = app_client.get("/jobs", params={"stage": "paint"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "stage"]
    assert "visualize" in r.json()["detail"][0]["msg"]
