"""The OpenAPI document says everything a route may answer, and its examples and
parameters are ones the service accepts (tests/contract runs Schemathesis on it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from api.resources import RunResources
from api.server import create_app
from api.settings import Settings

AUTHENTICATED = {"401", "403", "429", "503"}
KEY = "openapi-key"


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def body_schema(spec: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    ref = response["content"]["application/json"]["schema"]["$ref"]
    return spec["components"]["schemas"][ref.removeprefix("#/components/schemas/")]


@pytest.fixture(scope="module")
def documented(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(api_keys=[f"unit:{KEY}"], data_dir=tmp_path_factory.mktemp("data"))
    return create_app(settings).openapi()  # no lifespan: nothing starts


def test_every_authenticated_operation_documents_the_refusals_any_may_get(
    documented: dict[str, Any],
) -> None:
    authenticated = [(m, p, op) for m, p, op in operations(documented) if op.get("security")]
    assert len(authenticated) >= 9
    for method, path, operation in authenticated:
        missing = AUTHENTICATED - set(operation["responses"])
        assert not missing, f"{method} {path} does not document {sorted(missing)}"
        responses = operation["responses"]
        assert set(body_schema(documented, responses["429"])["required"]) == {
            "detail", "limit", "retry_after_s"}  # fmt: skip
        assert "dependency" in body_schema(documented, responses["503"])["properties"]
        for code in ("429", "503"):
            assert responses[code]["headers"]["Retry-After"]["required"] is True
        for code in ("401", "403"):
            assert "WWW-Authenticate" in responses[code]["headers"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs/{job_id}"),
        ("DELETE", "/jobs/{job_id}"),
        ("GET", "/jobs/{job_id}/events"),
        ("GET", "/jobs/{job_id}/download"),
        ("GET", "/files/{file_id}"),
        ("POST", "/cli/run"),
    ],
)
def test_operations_on_an_id_or_a_name_document_404(
    documented: dict[str, Any], method: str, path: str
) -> None:
    response = documented["paths"][path][method.lower()]["responses"]["404"]
    assert "detail" in body_schema(documented, response)["properties"]


@pytest.mark.parametrize(
    ("method", "path", "status", "targets"),
    [
        ("post", "/cli/run", "200", {"/jobs/{job_id}", "/jobs/{job_id}/events",
                                     "/jobs/{job_id}/download"}),
        ("post", "/cli/run", "202", {"/jobs/{job_id}", "/jobs/{job_id}/events",
                                     "/jobs/{job_id}/download"}),
        ("post", "/upload", "201", {"/files/{file_id}"}),
    ],
)  # fmt: skip
def test_an_answer_naming_a_job_or_an_upload_links_to_its_operations(
    documented: dict[str, Any], method: str, path: str, status: str, targets: set[str]
) -> None:
    links = documented["paths"][path][method]["responses"][status]["links"]
    reached = set()
    for link in links.values():
        pointer = unquote(link["operationRef"].removeprefix("#/paths/"))
        target, _, target_method = pointer.rpartition("/")
        target = target.replace("~1", "/").replace("~0", "~")
        operation = documented["paths"][target][target_method]
        [(name, value)] = link["parameters"].items()
        assert name in {p["name"] for p in operation["parameters"]}
        assert value == f"$response.body#/{name}"
        reached.add(target)
    assert reached >= targets


def test_upload_documents_a_missing_file_and_a_malformed_body(documented: dict[str, Any]) -> None:
    responses = documented["paths"]["/upload"]["post"]["responses"]
    assert {"400", "413", "422"} <= set(responses)


def test_the_cursor_of_the_job_list_is_declared_as_the_service_hands_it_out(
    documented: dict[str, Any],
) -> None:
    [cursor] = [p for p in documented["paths"]["/jobs"]["get"]["parameters"]
                if p["name"] == "cursor"]  # fmt: skip
    pattern = next(s["pattern"] for s in cursor["schema"]["anyOf"] if "pattern" in s)
    assert re.search(pattern, f"1714521600.123456:{'ab' * 16}")
    assert not re.search(pattern, "nonsense")


@pytest.mark.parametrize("value", ["500m", "2", "1.5Gi", ".5", "+1e3", "4E-2", "7Ki"])
def test_resource_quantities_of_the_declared_pattern_are_accepted(
    documented: dict[str, Any], value: str
) -> None:
    properties = documented["components"]["schemas"]["RunResources"]["properties"]
    for name in ("cpu", "memory"):
        assert re.search(properties[name]["pattern"], value)
        assert not re.search(properties[name]["pattern"], f"{value}x")
    assert RunResources(cpu=value, memory=value).cpu == value


def test_the_stage_filter_lists_the_stages_offered_and_their_aliases(
    tmp_path: Path,
) -> None:
    settings = Settings(api_keys=[f"unit:{KEY}"], data_dir=tmp_path, stages=["visualize", "run"])
    [stage] = [p for p in create_app(settings).openapi()["paths"]["/jobs"]["get"]["parameters"]
               if p["name"] == "stage"]  # fmt: skip
    enum = next(s["enum"] for s in stage["schema"]["anyOf"] if "enum" in s)
    assert enum == ["visualize", "render", "run"]


def test_the_longest_timeout_of_each_mode_is_declared(tmp_path: Path) -> None:
    settings = Settings(api_keys=[f"unit:{KEY}"], data_dir=tmp_path,
                        sync_timeout_max_s=7, async_timeout_max_s=70)  # fmt: skip
    spec = create_app(settings).openapi()
    run_request = Draft202012Validator(
        {"$ref": "#/components/schemas/RunRequest", "components": spec["components"]}
    )
    assert run_request.is_valid({"stage": "run", "timeout_s": 7})
    assert not run_request.is_valid({"stage": "run", "timeout_s": 8})
    assert not run_request.is_valid({"stage": "run", "mode": "sync", "timeout_s": 8})
    assert run_request.is_valid({"stage": "run", "mode": "async", "timeout_s": 70})
    assert not run_request.is_valid({"stage": "run", "mode": "async", "timeout_s": 71})


def test_without_an_allowed_prefix_no_run_example_names_an_absolute_path(
    documented: dict[str, Any],
) -> None:
    run_request = documented["components"]["schemas"]["RunRequest"]
    for example in run_request.get("examples", []):
        assert not any(str(v).startswith("/") for v in example["args"].values())


@pytest.mark.zyra
def test_the_run_example_is_one_the_service_runs(
    tmp_path_factory: pytest.TempPathFactory, inputs: Path
) -> None:
    settings = Settings(
        api_keys=[f"unit:{KEY}"],
        data_dir=tmp_path_factory.mktemp("data"),
        allowed_path_prefixes=[str(inputs)],
    )
    with TestClient(create_app(settings), headers={"X-API-Key": KEY}) as client:
        spec = client.get("/openapi.json").json()
        [example] = spec["components"]["schemas"]["RunRequest"]["examples"]
        run = client.post("/cli/run", json=example)
    assert run.status_code == 200, run.text
    assert run.json()["exit_code"] == 0, run.json()["stderr"]
    assert [o["name"] for o in run.json()["outputs"]] == [example["args"]["output"]]


def test_a_stage_the_filter_lists_is_accepted(app_client: TestClient) -> None:
    spec = app_client.get("/openapi.json").json()
    [stage] = [p for p in spec["paths"]["/jobs"]["get"]["parameters"] if p["name"] == "stage"]
    for value in next(s["enum"] for s in stage["schema"]["anyOf"] if "enum" in s):
        assert app_client.get("/jobs", params={"stage": value}).status_code == 200, value


def test_a_cursor_of_the_declared_form_is_accepted_and_another_is_a_422_naming_it(
    app_client: TestClient,
) -> None:
    assert app_client.get("/jobs", params={"cursor": f"1714521600.000000:{'0' * 32}"}).is_success
    refused = app_client.get("/jobs", params={"cursor": "1714521600:nonsense"})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["query", "cursor"]


def test_a_run_body_that_is_no_json_text_is_a_documented_400(app_client: TestClient) -> None:
    r = app_client.post(
        "/cli/run", content=b"\r\xff\xfe{", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert "detail" in r.json()
    assert "400" in app_client.get("/openapi.json").json()["paths"]["/cli/run"]["post"]["responses"]


def test_refusals_are_answered_as_documented(tmp_path: Path) -> None:
    settings = Settings(
        api_keys=[f"unit:{KEY}", "reader:reader-key read", "busy:busy-key"],
        data_dir=tmp_path,
        rate_limit_per_principal=2,
    )
    with TestClient(create_app(settings)) as client:
        spec = client.get("/openapi.json").json()
        answers = {
            "401": client.get("/jobs"),
            "403": client.post(
                "/cli/run", json={"stage": "run"}, headers={"X-API-Key": "reader-key"}
            ),
            "429": [client.get("/jobs", headers={"X-API-Key": "busy-key"}) for _ in range(3)][-1],
        }
    documented = spec["paths"]["/jobs"]["get"]["responses"] | {
        "403": spec["paths"]["/cli/run"]["post"]["responses"]["403"]
    }
    for status, answer in answers.items():
        assert answer.status_code == int(status)
        schema = {**documented[status]["content"]["application/json"]["schema"],
                  "components": spec["components"]}  # fmt: skip
        Draft202012Validator(schema).validate(answer.json())
        for header, declared in documented[status]["headers"].items():
            assert declared["required"] and header in answer.headers
            if declared["schema"]["type"] == "integer":
                assert answer.headers[header].isdigit()


def test_a_run_body_over_the_size_limit_is_a_documented_413(app_client: TestClient) -> None:
    spec = app_client.get("/openapi.json").json()
    limit = app_client.app.state.settings.max_request_body_mb << 20  # type: ignore[attr-defined]
    r = app_client.post("/cli/run", content=b" " * (limit + 1),
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 413
    documented = spec["paths"]["/cli/run"]["post"]["responses"]["413"]
    schema = {
        **documented["content"]["application/json"]["schema"],
        "components": spec["components"],
    }
    Draft202012Validator(schema).validate(r.json())
