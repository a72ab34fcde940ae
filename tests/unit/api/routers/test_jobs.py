from __future__ import annotations

import json

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


def rendered(content: object) -> bytes:
    """The body as the service writes it (compact JSON, keys in the order written)."""
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def test_listing_with_an_unknown_stage_answers_exactly_loc_type_msg(
    app_client: TestClient,
) -> None:
    r = app_client.get("/jobs", params={"stage": "paint"})
    [problem] = r.json()["detail"]
    assert problem["msg"].startswith("unknown stage 'paint'; valid stages: ")
    exact = {"loc": ["query", "stage"], "type": "enum", "msg": problem["msg"]}
    message = f"stage: {problem['msg']}"
    assert (r.status_code, r.content) == (
        422, rendered({"detail": [exact], "message": message})
    )  # fmt: skip


def test_listing_by_a_stage_alias_finds_the_stage(app_client: TestClient) -> None:
    run = app_client.post("/cli/run", json={"stage": "run", "args": {"config": FAILING_PIPELINE}})
    listed = app_client.get("/jobs", params={"stage": "run"}).json()["jobs"]
    assert run.json()["job_id"] in [job["job_id"] for job in listed]
    assert app_client.get("/jobs", params={"stage": "render"}).json()["jobs"] == [
        job for job in app_client.get("/jobs").json()["jobs"] if job["stage"] == "visualize"
    ]


def test_cancelling_an_unknown_job_answers_exactly_404(app_client: TestClient) -> None:
    r = app_client.delete("/jobs/0123456789abcdef")
    assert (r.status_code, r.content) == (
        404,
        rendered({"detail": "no job with id '0123456789abcdef'"}),
    )


def test_reading_an_unknown_job_answers_exactly_404(app_client: TestClient) -> None:
    r = app_client.get("/jobs/0123456789abcdef")
    assert (r.status_code, r.content) == (
        404,
        rendered({"detail": "no job with id '0123456789abcdef'"}),
    )


def test_cancelling_a_finished_sync_job_changes_nothing(app_client: TestClient) -> None:
    run = app_client.post("/cli/run", json={"stage": "run", "args": {"config": FAILING_PIPELINE}})
    job_id = run.json()["job_id"]
    r = app_client.delete(f"/jobs/{job_id}")
    assert (r.status_code, r.json()) == (
        200,
        {"job_id": job_id, "status": "failed", "cancelled": False,
         "message": "job already finished (failed); nothing changed"},
    )  # fmt: skip
