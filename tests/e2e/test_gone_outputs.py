"""Outputs gone from storage (deleted by hand, a bucket lifecycle rule, a lost volume)
while their job is still recorded: downloads answer 410 Gone saying so, never 200 with
nothing or 500, and the job's record says since when."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from tests.e2e.conftest import ApiServer, start_api, stop_api
from tests.e2e.jobs_client import submit, wait_finished
from tests.services import S3Server

MAP = {"no_coastline": True, "no_borders": True, "no_gridlines": True, "width": 120, "height": 60}
BUCKET = "gone-outputs"


@pytest.fixture(scope="module", params=["local", "s3"])
def gone_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, inputs: Path
) -> Iterator[ApiServer]:
    env = {"ZYRA_RESULT_TTL_S": "3600"}
    if request.param == "s3":
        env |= request.getfixturevalue("s3_server").api_env(bucket=BUCKET)
    server = start_api(tmp_path_factory.mktemp(f"gone-{request.param}"), inputs, **env)
    yield server
    stop_api(server)


@pytest.fixture
def client(gone_api: ApiServer) -> Iterator[httpx.Client]:
    with gone_api.client() as c:
        yield c


def remove_outputs(api: ApiServer, job_id: str, request: pytest.FixtureRequest) -> None:
    if api.env.get("ZYRA_STORAGE") == "s3":
        s3_server: S3Server = request.getfixturevalue("s3_server")
        bucket = boto3.resource("s3", endpoint_url=s3_server.url, **{
            k.lower(): v for k, v in s3_server.credentials().items() if k != "AWS_REGION"
        }, region_name="us-east-1").Bucket(BUCKET)  # fmt: skip
        assert list(bucket.objects.filter(Prefix=f"results/{job_id}/"))
        bucket.objects.filter(Prefix=f"results/{job_id}/").delete()
    else:
        folder = api.data_dir / "storage" / "results" / job_id
        assert folder.is_dir()
        shutil.rmtree(folder)


def test_downloads_of_outputs_gone_from_storage_are_410(
    gone_api: ApiServer, client: httpx.Client, inputs: Path, request: pytest.FixtureRequest
) -> None:
    field = str(inputs / "field.npy")
    single = submit(client, "visualize", "heatmap", {"input": field, "output": "one.png", **MAP})
    frames = {"inputs": [field, field], "output_dir": "f", "output_names": ["a.png", "b.png"]}
    pair = submit(client, "visualize", "heatmap", {**frames, **MAP})
    jobs = {job_id: wait_finished(client, job_id) for job_id in (single, pair)}
    assert client.get(f"/jobs/{single}/download").content.startswith(b"\x89PNG")
    for job_id in jobs:
        remove_outputs(gone_api, job_id, request)
    first_name = jobs[pair]["outputs"][0]["name"]

    for url in (f"/jobs/{single}/download", f"/jobs/{pair}/download",
                f"/jobs/{pair}/download?file={first_name}"):  # fmt: skip
        reply = client.get(url)
        assert reply.status_code == 410, (url, reply.status_code, reply.content[:200])
        detail = reply.json()["detail"]
        assert "no longer in storage" in detail and "ZYRA_RESULT_TTL_S" in detail, detail
    for job_id in jobs:
        job = client.get(f"/jobs/{job_id}").json()
        assert job["outputs_expired_at"] is not None  # the record says so from now on
        assert job["outputs"] == jobs[job_id]["outputs"]
    assert job["outputs_expired_at"] in client.get(f"/jobs/{pair}/download").json()["detail"]
