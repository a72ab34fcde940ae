"""The OpenAPI schema lists every job status and exit reason a client may be sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.server import create_app
from api.settings import Settings
from runner.lifecycle import ExitReason, JobStatus

STATUSES = [s.value for s in JobStatus]
REASONS = [r.value for r in ExitReason]


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(api_keys=["unit:key"], data_dir=tmp_path_factory.mktemp("data"))
    return create_app(settings).openapi()  # no lifespan: nothing starts


def enum_of(schema: dict[str, Any], openapi: dict[str, Any]) -> list[str] | None:
    """The values a schema allows, through `$ref` and `anyOf` (`X | None`)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return enum_of(openapi["components"]["schemas"][name], openapi)
    if "enum" in schema:
        return schema["enum"]
    for option in schema.get("anyOf", []):
        if (values := enum_of(option, openapi)) is not None:
            return values
    return None


@pytest.mark.parametrize(
    ("model", "field", "values"),
    [
        ("JobView", "status", STATUSES),
        ("JobView", "reason", REASONS),
        ("FailedRunResponse", "reason", REASONS),
        ("CancelResponse", "status", STATUSES),
    ],
)
def test_bodies_list_the_statuses_and_reasons(
    openapi: dict[str, Any], model: str, field: str, values: list[str]
) -> None:
    schema = openapi["components"]["schemas"][model]["properties"][field]
    assert enum_of(schema, openapi) == values


def test_the_status_filter_of_the_job_list_lists_the_statuses(openapi: dict[str, Any]) -> None:
    [query] = [p for p in openapi["paths"]["/jobs"]["get"]["parameters"] if p["name"] == "status"]
    assert enum_of(query["schema"], openapi) == STATUSES


def test_the_vocabulary_is_the_documented_one() -> None:
    documented = Path(__file__).parents[3].joinpath("README.md").read_text()
    assert STATUSES == ["queued", "running", "succeeded", "failed", "cancelled"]
    assert all(f"`{reason}`" in documented for reason in REASONS)
