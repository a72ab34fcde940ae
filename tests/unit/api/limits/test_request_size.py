"""What one request may carry (api/limits/request_size.py, api/schemas.py): in-process
app with small limits; the same as a client meets them: tests/e2e/test_request_limits.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.server import create_app
from api.settings import Settings

KEY = "unit-key"
MAX_LENGTH = 50
PIPELINE_ARGS = {"input": "field.npy", "output": "map.png"}


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        api_keys=[f"unit:{KEY}"],
        data_dir=tmp_path_factory.mktemp("data"),
        max_request_body_mb=1,
        max_arg_length=MAX_LENGTH,
        max_upload_mb=4,
    )
    with TestClient(create_app(settings), headers={"X-API-Key": KEY}) as client:
        yield client


def post(client: TestClient, payload: dict, **headers: str) -> httpx.Response:
    """JSON as any encoder may send it: non-ASCII escaped, so a lone surrogate too."""
    return client.post(
        "/cli/run",
        content=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **headers},
    )


def heatmap(**args: object) -> dict:
    return {"stage": "visualize", "command": "heatmap", "args": args}


def test_the_defaults_leave_room_for_long_arguments() -> None:
    settings = Settings()
    assert settings.max_request_body_mb == 8
    assert settings.max_arg_length == 1 << 20


def test_every_string_of_an_argument_counts_each_problem_named(app_client: TestClient) -> None:
    long = "x" * (MAX_LENGTH + 1)
    pipeline = {"stages": [{"stage": "visualize", "command": "heatmap",
                            "args": {**PIPELINE_ARGS, "title": long}}]}  # fmt: skip
    r = post(app_client, heatmap(input=long, inputs=["a.npy", long], title="x" * MAX_LENGTH))
    assert r.status_code == 422, r.text
    assert sorted(p["loc"][-1] for p in r.json()["detail"]) == ["input", "inputs"]
    assert all("at most 50 characters" in p["msg"] for p in r.json()["detail"])
    r = post(app_client, {"stage": "run", "args": {"config": pipeline}})
    assert r.status_code == 422, r.text
    assert [p["loc"] for p in r.json()["detail"]] == [["body", "args", "config"]]


def test_an_argument_over_the_limit_without_a_credential_is_401(app_client: TestClient) -> None:
    r = post(app_client, heatmap(input="x" * (MAX_LENGTH + 1)), **{"X-API-Key": "wrong"})
    assert r.status_code == 401


def test_a_lone_surrogate_deep_in_an_argument_is_422_naming_it(app_client: TestClient) -> None:
    pipeline = {"stages": [{"stage": "visualize", "command": "heatmap",
                            "args": {**PIPELINE_ARGS, "\udfff": True}}]}  # fmt: skip
    r = post(app_client, {"stage": "run", "args": {"config": pipeline}})
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "args", "config"]
    assert "valid Unicode" in problem["msg"] and "'\\udfff'" in problem["msg"]
    r = post(app_client, heatmap(inputs=["ok.npy", "\ud800.npy"]))
    assert [p["loc"] for p in r.json()["detail"]] == [["body", "args", "inputs"]]


def test_any_json_body_over_the_limit_is_413_but_uploads_have_their_own(
    app_client: TestClient, tmp_path: Path
) -> None:
    r = post(app_client, heatmap(inputs=["x" * 40] * 30_000))  # each item short enough
    assert r.status_code == 413
    assert r.json()["detail"] == (
        "request bodies are limited to 1 MB (1048576 bytes, ZYRA_MAX_REQUEST_BODY_MB)"
    )
    r = app_client.post("/upload", files={"file": ("two.bin", b"\0" * (2 << 20))})
    assert r.status_code == 201, r.text


def test_a_streamed_body_is_counted_as_it_arrives(app_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"stage": "visualize", "command": "heatmap", "args": {"title": "'
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}}'

    r = app_client.post("/cli/run", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
