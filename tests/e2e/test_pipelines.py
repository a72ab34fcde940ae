"""`run` pipelines through the real API: every stage obeys the exposure and path rules.

Each attack is answered 422 naming the stage and argument, and nothing runs; a
legitimate pipeline runs, sync inline and async from an upload.
"""

from __future__ import annotations

import json
import site
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ApiServer
from tests.e2e.jobs_client import wait_finished

MAP = {"no_coastline": True, "no_borders": True, "no_gridlines": True, "width": 120, "height": 60}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def pipeline(*stages: dict[str, Any]) -> dict[str, Any]:
    return {"stages": list(stages)}


def stage(name: str, command: str, **args: Any) -> dict[str, Any]:
    return {"stage": name, "command": command, "args": args}


def heatmap(input_: str, output: str = "map.png") -> dict[str, Any]:
    return stage("visualize", "heatmap", input=input_, output=output, **MAP)


def job_ids(client: httpx.Client) -> set[str]:
    response = client.get("/jobs", params={"limit": 500})
    assert response.status_code == 200, response.text
    return {job["job_id"] for job in response.json()["jobs"]}


def upload(client: httpx.Client, name: str, data: bytes) -> str:
    response = client.post("/upload", files={"file": (name, data)})
    assert response.status_code == 201, response.text
    return response.json()["file_id"]


@pytest.fixture
def nothing_runs(client: httpx.Client) -> Iterator[None]:
    """The test's requests create no job at all."""
    before = job_ids(client)
    yield
    assert job_ids(client) == before


def refused(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/cli/run", json={"mode": "sync", **body})
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    return problem


def refused_pipeline(client: httpx.Client, config: Any, **args: Any) -> dict[str, Any]:
    return refused(client, {"stage": "run", "args": {"config": config, **args}})


def site_packages() -> str:
    return next(p for p in site.getsitepackages() if p.endswith("site-packages"))


# --- attacks -----------------------------------------------------------------------------


def test_reading_the_api_process_environment_is_refused(
    api: ApiServer, client: httpx.Client, inputs: Path, nothing_runs: None
) -> None:
    environ = f"/proc/{api.process.pid}/environ"
    problem = refused_pipeline(client, pipeline(
        heatmap(str(inputs / "field.npy")),
        stage("disseminate", "local", input=environ, path="environ.txt"),
    ))  # fmt: skip
    assert problem["loc"] == ["body", "args", "config", "stages", 1, "input"]
    assert problem["msg"].startswith("stage 2 (disseminate local): absolute paths are refused")
    assert problem["input"] == environ


@pytest.mark.parametrize(
    "value", ["${HOME}/../jobs.sqlite3", "$HOME/../jobs.sqlite3", "${HOME:-/}etc/passwd"]
)
def test_environment_references_are_refused(
    client: httpx.Client, nothing_runs: None, value: str
) -> None:
    problem = refused_pipeline(client, pipeline(
        stage("export", "local", input=value, path="copy.bin")
    ))  # fmt: skip
    assert problem["loc"] == ["body", "args", "config", "stages", 0, "input"]
    assert problem["type"] == "env"
    assert problem["msg"].startswith("stage 1 (export local): ")
    assert "ZYRA_PIPELINE_ENV_ALLOW (allowed: none)" in problem["msg"]


@pytest.mark.parametrize(
    "target", [f"{site_packages()}/zyra/__init__.py", "../../../../.venv/lib/evil.py"]
)
def test_writing_outside_the_working_directory_is_refused(
    client: httpx.Client, inputs: Path, nothing_runs: None, target: str
) -> None:
    problem = refused_pipeline(client, pipeline(
        stage("disseminate", "local", input=str(inputs / "field.npy"), path=target)
    ))  # fmt: skip
    assert problem["loc"] == ["body", "args", "config", "stages", 0, "path"]
    assert problem["type"] == "path" and problem["input"] == target


def test_a_stage_the_service_does_not_offer_is_refused(
    client: httpx.Client, inputs: Path, nothing_runs: None
) -> None:
    problem = refused_pipeline(client, pipeline(
        heatmap(str(inputs / "field.npy")),
        stage("narrate", "describe", input="map.png"),
    ))  # fmt: skip
    assert problem["loc"] == ["body", "args", "config", "stages", 1, "stage"]
    assert "stage 'narrate' is not offered" in problem["msg"]


def test_a_nested_run_is_refused(client: httpx.Client, nothing_runs: None) -> None:
    problem = refused_pipeline(client, pipeline(stage("run", "run", config="/etc/x.yaml")))
    assert problem["loc"] == ["body", "args", "config", "stages", 0, "stage"]
    assert "may not run another pipeline" in problem["msg"]


def test_an_override_that_leaves_the_working_directory_is_refused(
    client: httpx.Client, inputs: Path, nothing_runs: None
) -> None:
    problem = refused_pipeline(
        client, pipeline(heatmap(str(inputs / "field.npy"))), overrides=["1.input=/etc/passwd"]
    )
    assert problem["loc"] == ["body", "args", "config", "stages", 0, "input"]
    assert problem["input"] == "/etc/passwd"


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ("pipeline.yaml", "a relative path names nothing yet"),
        ("https://example.org/pipeline.yaml", "a URL is not accepted here; give a pipeline "
         'object ({"stages": [{"stage", "command", "args"}, ...]}), an uploaded file '
         '("file_id:<id>" or {"file_id": "<id>"}) or an absolute path under an allowed prefix'),
        ("/etc/passwd", "absolute paths are refused"),
        ({"jobs": {"build": {"steps": ["visualize heatmap --input x"]}}},
         "is a Zyra workflow (it has `jobs` or `on`); only pipelines are accepted: a pipeline "
         "is a mapping with a `stages` list of 1 to 100 stages"),
    ],
)  # fmt: skip
def test_a_config_that_is_not_an_accepted_pipeline_is_refused(
    client: httpx.Client, nothing_runs: None, config: Any, says: str
) -> None:
    problem = refused_pipeline(client, config)
    assert problem["loc"] == ["body", "args", "config"]
    assert says in problem["msg"]


@pytest.mark.parametrize(
    ("stage_", "command", "args", "arg"),
    [
        ("search", "api", {"url": "http://127.0.0.1:9", "api_query": "q"}, "json_body"),
        ("acquire", "api", {"url": "http://127.0.0.1:9"}, "data"),
    ],
)
def test_at_files_outside_the_working_directory_are_refused(
    client: httpx.Client, nothing_runs: None, stage_: str, command: str, args: dict, arg: str
) -> None:
    direct = refused(
        client, {"stage": stage_, "command": command, "args": {**args, arg: "@/etc/passwd"}}
    )
    assert direct["loc"] == ["body", "args", arg] and direct["type"] == "path"
    assert direct["msg"].startswith("'@' makes Zyra read the file it names")
    # A pipeline names options as Zyra's runner maps them: `query` is `--query`.
    in_pipeline = {"query" if k == "api_query" else k: v for k, v in args.items()}
    problem = refused_pipeline(
        client, pipeline(stage(stage_, command, **in_pipeline, **{arg: "@/etc/passwd"}))
    )
    assert problem["loc"] == ["body", "args", "config", "stages", 0, arg]
    assert problem["msg"].startswith(f"stage 1 ({stage_} {command}): '@' makes Zyra read")


# --- legitimate pipelines ----------------------------------------------------------------


def test_an_inline_pipeline_runs_sync(client: httpx.Client, inputs: Path) -> None:
    response = client.post("/cli/run", json={
        "stage": "run", "mode": "sync",
        "args": {"config": pipeline(heatmap(str(inputs / "field.npy")))},
    })  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded" and body["exit_code"] == 0, body["stderr"]
    assert [o["name"] for o in body["outputs"]] == ["map.png"]  # not the staged pipeline
    png = client.get(f"/jobs/{body['job_id']}/download")
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)


def test_an_uploaded_pipeline_runs_async_on_an_uploaded_field(
    client: httpx.Client, inputs: Path
) -> None:
    field = upload(client, "field.npy", (inputs / "field.npy").read_bytes())
    config = upload(
        client, "pipeline.json", json.dumps(pipeline(heatmap(f"file_id:{field}"))).encode()
    )
    response = client.post(
        "/cli/run", json={"stage": "run", "mode": "async", "args": {"config": f"file_id:{config}"}}
    )
    assert response.status_code == 202, response.text
    job = wait_finished(client, response.json()["job_id"])
    assert (job["status"], job["exit_code"]) == ("succeeded", 0), job["stderr"]
    assert [o["name"] for o in job["outputs"]] == ["map.png"]
    assert job["args"] == {"config": f"file_id:{config}"}  # the record shows what was asked
    png = client.get(f"/jobs/{job['job_id']}/download")
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)
