"""Request validation of /cli: clear 4xx answers, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

PIPELINE = {"stages": [{"stage": "visualize", "command": "heatmap",
                        "args": {"input": "field.npy", "output": "map.png"}}]}  # fmt: skip


def test_commands_document_lists_stages_with_schemas(app_client: TestClient) -> None:
    body = app_client.get("/cli/commands").json()
    from importlib.metadata import version

    assert body["zyra_version"] == version("zyra")
    assert set(body["stages"]) == {
        "acquire",
        "process",
        "visualize",
        "disseminate",
        "run",
        "search",
    }
    assert body["stages"]["acquire"]["aliases"] == ["import", "ingest"]
    heatmap = body["stages"]["visualize"]["commands"]["heatmap"]
    assert heatmap["schema"]["properties"]["width"]["type"] == "integer"


def test_unknown_stage_is_404_naming_valid_stages(app_client: TestClient) -> None:
    r = app_client.post("/cli/run", json={"stage": "paint", "command": "x", "args": {}})
    assert r.status_code == 404
    detail = r.json()["detail"]
    assert detail["field"] == "stage"
    assert "visualize" in detail["valid"] and "visualize" in detail["msg"]


def test_unknown_command_is_404_naming_valid_commands(app_client: TestClient) -> None:
    r = app_client.post("/cli/run", json={"stage": "render", "command": "sculpt", "args": {}})
    assert r.status_code == 404
    assert r.json()["detail"]["field"] == "command"
    assert "heatmap" in r.json()["detail"]["valid"]


def test_bad_argument_is_422_naming_it_and_what_it_accepts(app_client: TestClient) -> None:
    r = app_client.post(
        "/cli/run",
        json={"stage": "visualize", "command": "heatmap", "args": {"width": "wide", "oops": 1}},
    )
    assert r.status_code == 422
    problems = {tuple(p["loc"]): p for p in r.json()["detail"]}
    assert "integer" in problems[("body", "args", "width")]["msg"]
    assert "accepted:" in problems[("body", "args", "oops")]["msg"]


def test_timeout_above_the_server_maximum_is_422(app_client: TestClient) -> None:
    r = app_client.post(
        "/cli/run", json={"stage": "run", "args": {"config": PIPELINE}, "timeout_s": 31}
    )
    assert r.status_code == 422
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "timeout_s"] and "at most 30" in problem["msg"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"stage": ""},
        {"stage": "visualize", "command": "heatmap", "args": []},
        {"stage": "visualize", "command": "heatmap", "args": {"input": "a\x00b"}},
        {"stage": "visualize", "command": "heatmap", "args": {"extent": [1, "x"]}},
        {"stage": "visualize", "command": "heatmap", "args": {"extent": [[1]]}},
        {"stage": "visualize", "command": "heatmap", "args": {"width": {"a": 1}}},
        {"stage": "visualize", "command": "heatmap", "args": {}, "mode": "later"},
        {"stage": "visualize", "command": "heatmap", "args": {}, "timeout_s": -1},
        {"stage": "visualize", "command": "heatmap", "args": {}, "shell": "rm -rf /"},
        {"stage": 5, "command": ["heatmap"]},
        {"stage": "x" * 10_000},
        [1, 2, 3],
        "not an object",
    ],
)
def test_malformed_requests_get_a_4xx_never_a_500(app_client: TestClient, body) -> None:
    r = app_client.post("/cli/run", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert "detail" in r.json()


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"stage": "visualize", "command": "heatmap", "args": {"width": 1e400}}',
        b'{"stage": "visualize", "command": "heatmap", "args": {"vmin": NaN}}',
        b'{"stage": "run", "args": {"config": "p.yaml"}, "timeout_s": Infinity}',
        b"",
    ],
)
def test_body_that_is_not_plain_json_is_422(app_client: TestClient, raw: bytes) -> None:
    r = app_client.post("/cli/run", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


@pytest.mark.parametrize(
    ("resources", "field", "text"),
    [
        ({"memory": "100Gi"}, "memory", "at most 4Gi"),
        ({"cpu": "64"}, "cpu", "at most 2"),
        ({"memory": "lots"}, "memory", "quantity"),
    ],
)
def test_resources_beyond_the_limits_or_malformed_are_422(
    app_client: TestClient, resources: dict, field: str, text: str
) -> None:
    r = app_client.post(
        "/cli/run",
        json={"stage": "run", "args": {"config": PIPELINE}, "mode": "async",
              "resources": resources},
    )  # fmt: skip
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"][:3] == ["body", "resources", field]
    assert text in problem["msg"]
