"""Uploads, file_id references and downloads, on local storage and a real S3 server."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ApiServer, start_api, stop_api
from tests.e2e.jobs_client import submit, wait_finished
from tests.services import S3Server

MAP = ["--no-coastline", "--no-borders", "--no-gridlines", "--width", "200", "--height", "100"]
MAP_ARGS = {"no_coastline": True, "no_borders": True, "no_gridlines": True,
            "width": 200, "height": 100}  # fmt: skip


@pytest.fixture(scope="module", params=["local", "s3"])
def files_api(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    inputs: Path,
) -> Iterator[ApiServer]:
    env = {"ZYRA_MAX_UPLOAD_MB": "5"}
    if request.param == "s3":
        s3_server: S3Server = request.getfixturevalue("s3_server")
        env |= s3_server.api_env(bucket="files-e2e")
    server = start_api(tmp_path_factory.mktemp(f"files-{request.param}"), inputs, **env)
    yield server
    stop_api(server)


@pytest.fixture
def client(files_api: ApiServer) -> Iterator[httpx.Client]:
    with files_api.client() as c:
        yield c


def upload(client: httpx.Client, name: str, data: bytes) -> dict:
    response = client.post("/upload", files={"file": (name, data)})
    assert response.status_code == 201, response.text
    return response.json()


def zyra_direct(args: list[str], cwd: Path) -> None:
    zyra = Path(sys.executable).parent / "zyra"
    subprocess.run([zyra, *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def reference_png(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """What `zyra visualize heatmap` itself writes for field.npy."""
    folder = tmp_path_factory.mktemp("direct")
    zyra_direct(["visualize", "heatmap", "--input", str(inputs / "field.npy"),
                 "--output", "direct.png", *MAP], folder)  # fmt: skip
    return (folder / "direct.png").read_bytes()


def test_upload_answers_its_metadata(client: httpx.Client, inputs: Path) -> None:
    data = (inputs / "field.npy").read_bytes()
    meta = upload(client, "field.npy", data)
    assert meta["filename"] == "field.npy"
    assert meta["size"] == len(data)
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert client.get(f"/files/{meta['file_id']}").json() == meta
    assert client.get("/files/" + "0" * 32).status_code == 404
    assert client.get("/files/../../etc").status_code == 404


def test_sync_and_async_runs_on_an_upload_match_zyra_run_directly(
    client: httpx.Client, inputs: Path, reference_png: bytes
) -> None:
    meta = upload(client, "field.npy", (inputs / "field.npy").read_bytes())
    sync = client.post("/cli/run", json={
        "stage": "visualize", "command": "heatmap",
        "args": {"input": f"file_id:{meta['file_id']}", "output": "sync.png", **MAP_ARGS},
    }).json()  # fmt: skip
    assert sync["exit_code"] == 0, sync["stderr"]
    assert [o["name"] for o in sync["outputs"]] == ["sync.png"]  # the input is not an output
    assert client.get(f"/jobs/{sync['job_id']}/download").content == reference_png

    args = {"input": {"file_id": meta["file_id"]}, "output": "async.png", **MAP_ARGS}
    job_id = submit(client, "visualize", "heatmap", args)
    job = wait_finished(client, job_id)
    assert job["exit_code"] == 0, job["stderr"]
    download = client.get(f"/jobs/{job_id}/download")
    assert download.content == reference_png
    assert download.headers["content-disposition"] == 'attachment; filename="async.png"'
    assert job["outputs"][0]["sha256"] == hashlib.sha256(reference_png).hexdigest()


def test_several_outputs_download_as_a_zip_or_one_by_name(
    client: httpx.Client, inputs: Path
) -> None:
    npy = upload(client, "f.npy", (inputs / "field.npy").read_bytes())
    both = client.post("/cli/run", json={
        "stage": "visualize", "command": "heatmap",
        "args": {"inputs": [f"file_id:{npy['file_id']}", f"file_id:{npy['file_id']}"],
                 "output_dir": "frames", "output_names": ["a.png", "b.png"], **MAP_ARGS},
    }).json()  # fmt: skip
    assert both["exit_code"] == 0, both["stderr"]
    names = sorted(o["name"] for o in both["outputs"])
    assert len(names) == 2, names
    archive = client.get(f"/jobs/{both['job_id']}/download")
    assert archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert sorted(z.namelist()) == names
        first = z.read(names[0])
    one = client.get(f"/jobs/{both['job_id']}/download", params={"file": names[0]})
    assert one.content == first


def test_unknown_or_misplaced_file_ids_are_422_naming_the_arg(client: httpx.Client) -> None:
    r = client.post("/cli/run", json={"stage": "visualize", "command": "heatmap",
                                      "args": {"input": "file_id:" + "0" * 32}})  # fmt: skip
    assert r.status_code == 422
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "args", "input"] and "POST /upload" in problem["msg"]
    r = client.post("/cli/run", json={"stage": "visualize", "command": "heatmap",
                                      "args": {"input": "file_id:../../etc/passwd"}})  # fmt: skip
    assert r.status_code == 422
    r = client.post("/cli/run", json={"stage": "visualize", "command": "heatmap",
                                      "args": {"cmap": {"file_id": "0" * 32}}})  # fmt: skip
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "args", "cmap"]


def test_upload_names_cannot_steer_where_files_go(
    files_api: ApiServer, client: httpx.Client, inputs: Path
) -> None:
    meta = upload(client, "../../../../tmp/evil.npy", (inputs / "field.npy").read_bytes())
    body = client.post("/cli/run", json={
        "stage": "visualize", "command": "heatmap",
        "args": {"input": f"file_id:{meta['file_id']}", "output": "ok.png", **MAP_ARGS},
    }).json()  # fmt: skip
    assert body["exit_code"] == 0, body["stderr"]
    assert not Path("/tmp/evil.npy").exists()
    staged = f"inputs/{meta['file_id']}/evil.npy"
    job = client.get(f"/jobs/{body['job_id']}").json()
    assert job["args"]["input"] == f"file_id:{meta['file_id']}"
    assert staged not in [o["name"] for o in job["outputs"]]
    r = client.get(f"/jobs/{body['job_id']}/download", params={"file": "../../jobs.sqlite3"})
    assert r.status_code == 404


def test_upload_over_the_limit_is_413(client: httpx.Client) -> None:
    r = client.post("/upload", files={"file": ("big.bin", b"\0" * (6 << 20))})
    assert r.status_code == 413
    assert "limit" in r.json()["detail"]


def test_upload_without_a_file_field_is_422(client: httpx.Client) -> None:
    r = client.post("/upload", files={"other": ("x.txt", b"x")})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "file"]
    assert client.post("/upload", content=b"raw").status_code == 422


def test_s3_download_redirects_to_a_url_signed_for_the_public_endpoint(
    tmp_path: Path, inputs: Path, s3_server: S3Server, reference_png: bytes
) -> None:
    public = s3_server.url.replace("127.0.0.1", "localhost")
    api = start_api(
        tmp_path, inputs, **s3_server.api_env(bucket="files-redirect"),
        ZYRA_S3_PUBLIC_ENDPOINT_URL=public, ZYRA_S3_REDIRECT_DOWNLOADS="true",
    )  # fmt: skip
    try:
        with api.client() as client:
            body = client.post("/cli/run", json={
                "stage": "visualize", "command": "heatmap",
                "args": {"input": str(inputs / "field.npy"), "output": "r.png", **MAP_ARGS},
            }).json()  # fmt: skip
            r = client.get(f"/jobs/{body['job_id']}/download")
            assert r.status_code == 307
            location = r.headers["location"]
            assert location.startswith(f"{public}/files-redirect/results/{body['job_id']}/r.png?")
            assert "X-Amz-Signature=" in location
            fetched = httpx.get(location)
            assert fetched.status_code == 200 and fetched.content == reference_png
            assert httpx.get(location.replace("r.png", "s.png")).status_code == 403
    finally:
        stop_api(api)


def test_an_upload_gone_before_the_run_fails_clearly(api: ApiServer, inputs: Path) -> None:
    """The session server (local storage): its upload's bytes vanish after validation
    would have passed, as when retention removes them at the wrong moment."""
    with api.client() as client:
        meta = upload(client, "field.npy", (inputs / "field.npy").read_bytes())
        (api.data_dir / "storage" / "uploads" / meta["file_id"] / "data").unlink()
        args = {"input": f"file_id:{meta['file_id']}", "output": "x.png", **MAP_ARGS}
        r = client.post("/cli/run", json={"stage": "render", "command": "heatmap", "args": args})
        assert r.status_code == 422
        assert "no longer stored" in r.json()["detail"][0]["msg"]
        job = wait_finished(client, submit(client, "render", "heatmap", args))
        assert (job["status"], job["reason"], job["exit_code"]) == ("failed", "InputMissing", 1)
        assert "no longer stored" in job["stderr"]
