"""Request validation of /cli: clear 4xx answers, never a 500."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from api.jobs.callbacks import callback_refusal
from runner.execute import ExecutorUnavailableError
from runner.inputs import upload_key

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


# --- the exact bytes of each refusal: what clients parse today stays as it is ------------


def rendered(content: object) -> bytes:
    """The body as the service writes it (compact JSON, keys in the order written)."""
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def test_unknown_stage_answer_is_exactly_msg_field_valid(app_client: TestClient) -> None:
    r = app_client.post("/cli/run", json={"stage": "paint", "command": "x", "args": {}})
    valid = r.json()["detail"]["valid"]
    assert "visualize" in valid
    msg = f"unknown stage 'paint'; valid stages: {', '.join(valid)}"
    assert (r.status_code, r.content) == (
        404,
        rendered({"detail": {"msg": msg, "field": "stage", "valid": valid}}),
    )


def test_unknown_command_answer_is_exactly_msg_field_valid(app_client: TestClient) -> None:
    r = app_client.post("/cli/run", json={"stage": "render", "command": "sculpt", "args": {}})
    detail = r.json()["detail"]
    assert "heatmap" in detail["valid"] and "sculpt" in detail["msg"]
    assert (r.status_code, r.content) == (
        404,
        rendered({"detail": {"msg": detail["msg"], "field": "command", "valid": detail["valid"]}}),
    )


def test_bad_argument_answers_list_loc_msg_type_input(app_client: TestClient) -> None:
    r = app_client.post(
        "/cli/run", json={"stage": "visualize", "command": "heatmap", "args": {"width": "wide"}}
    )
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "args", "width"] and problem["input"] == "wide"
    in_order = {key: problem[key] for key in ("loc", "msg", "type", "input")}
    message = "args.width: wrong type; expects an integer"  # loc and msg, as n8n shows it
    assert (r.status_code, r.content) == (
        422, rendered({"detail": [in_order], "message": message})
    )  # fmt: skip


def test_timeout_answer_is_exactly_loc_msg_type_input(app_client: TestClient) -> None:
    r = app_client.post(
        "/cli/run", json={"stage": "run", "args": {"config": PIPELINE}, "timeout_s": 31}
    )
    problem = {"loc": ["body", "timeout_s"], "msg": "timeout_s may be at most 30 seconds; got 31",
               "type": "less_than_equal", "input": 31.0}  # fmt: skip
    message = "timeout_s: timeout_s may be at most 30 seconds; got 31"
    assert (r.status_code, r.content) == (
        422, rendered({"detail": [problem], "message": message})
    )  # fmt: skip


def test_resources_answer_is_exactly_loc_type_msg(app_client: TestClient) -> None:
    r = app_client.post(
        "/cli/run",
        json={"stage": "run", "args": {"config": PIPELINE}, "mode": "async",
              "resources": {"memory": "100Gi", "cpu": "64"}},
    )  # fmt: skip
    problems = [
        {"loc": ["body", "resources", name], "type": "less_than_equal",
         "msg": f"{name} may be at most {limit}"}
        for name, limit in (("cpu", "2"), ("memory", "4Gi"))
    ]  # fmt: skip
    message = "resources.cpu: cpu may be at most 2; resources.memory: memory may be at most 4Gi"
    assert (r.status_code, r.content) == (
        422, rendered({"detail": problems, "message": message})
    )  # fmt: skip


def test_refused_callback_answer_is_exactly_loc_msg_type_input(app_client: TestClient) -> None:
    hook = "http://127.0.0.1:9/hook"
    r = app_client.post(
        "/cli/run",
        json={"stage": "run", "args": {"config": PIPELINE}, "mode": "async",
              "callback_url": hook},
    )  # fmt: skip
    why = callback_refusal(hook, app_client.app.state.job_service.outbound)
    assert why and "127.0.0.1" in why
    problem = {"loc": ["body", "callback_url"], "msg": why, "type": "url", "input": hook}
    message = f"callback_url: {why}"
    assert (r.status_code, r.content) == (
        422, rendered({"detail": [problem], "message": message})
    )  # fmt: skip


def test_an_upload_gone_before_the_run_answers_exactly_loc_type_msg(
    app_client: TestClient,
) -> None:
    file_id = app_client.post("/upload", files={"file": ("f.npy", b"\x93NUMPY")}).json()["file_id"]
    storage = app_client.app.state.job_service.storage
    (storage.root / upload_key(file_id)).unlink()  # its metadata stays: the run is accepted
    r = app_client.post(
        "/cli/run",
        json={"stage": "visualize", "command": "heatmap",
              "args": {"input": f"file_id:{file_id}", "output": "map.png"}},
    )  # fmt: skip
    [problem] = r.json()["detail"]
    assert file_id in problem["msg"]
    gone = {"loc": ["body", "args"], "type": "file_ref", "msg": problem["msg"]}
    message = f"args: {problem['msg']}"
    assert (r.status_code, r.content) == (
        422, rendered({"detail": [gone], "message": message})
    )  # fmt: skip


def test_an_executor_that_is_down_answers_503_naming_it(
    app_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_args: object, **_kwargs: object) -> None:
        raise ExecutorUnavailableError("restarting")

    monkeypatch.setattr(app_client.app.state.job_service.executor, "run", down)
    r = app_client.post("/cli/run", json={"stage": "run", "args": {"config": PIPELINE}})
    body = {"detail": "sync executor is unavailable: restarting", "dependency": "sync executor"}
    assert (r.status_code, r.headers["retry-after"], r.content) == (503, "5", rendered(body))
