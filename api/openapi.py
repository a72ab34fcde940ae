"""The OpenAPI document (`/openapi.json`, `/docs`), completed with what only this
server's settings can say, so that what it declares valid the server accepts: the
stages `GET /jobs?stage=` takes (each stage offered and its aliases), the longest
`timeout_s` of a sync and of an async run, and an example `POST /cli/run` whose input
lies under the first ZYRA_ALLOWED_PATH_PREFIXES (without one no absolute path is
allowed, and no example is given)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

from fastapi import FastAPI

from api.schemas import FailedRunResponse
from api.settings import Settings
from runner.catalog import STAGE_SOURCES

STAGE_FILTER = ("/jobs", "get", "stage")  # path, method, query parameter
JOB_WAIT = ("/jobs/{job_id}", "get", "wait")


def stage_names(stages: Iterable[str]) -> list[str]:
    """Every name `CommandCatalog.canonical_stage` takes for these stages."""
    return [name for stage in stages for name in (stage, *STAGE_SOURCES[stage].aliases)]


def run_example(prefix: str) -> dict[str, Any]:
    """A heatmap of `field.npy` in `prefix` (README, "Try it"), without map data to fetch."""
    return {
        "stage": "visualize",
        "command": "heatmap",
        "args": {
            "input": str(PurePosixPath(prefix, "field.npy")),
            "output": "heatmap.png",
            "no_coastline": True,
            "no_borders": True,
            "no_gridlines": True,
        },
        "mode": "sync",
    }


def _declare_stage_filter(document: dict[str, Any], stages: list[str]) -> None:
    path, method, name = STAGE_FILTER
    [parameter] = [p for p in document["paths"][path][method]["parameters"] if p["name"] == name]
    for option in parameter["schema"]["anyOf"]:  # `str | None`
        if option.get("type") == "string":
            option["enum"] = stage_names(stages)


def _declare_job_wait(document: dict[str, Any], max_wait_s: float) -> None:
    """`wait` at most ZYRA_MAX_JOB_WAIT_S, which the route enforces."""
    path, method, name = JOB_WAIT
    [parameter] = [p for p in document["paths"][path][method]["parameters"] if p["name"] == name]
    parameter["schema"]["maximum"] = max_wait_s


def _declare_timeouts(run_request: dict[str, Any], sync_max_s: float, async_max_s: float) -> None:
    """`timeout_s` at most ZYRA_ASYNC_TIMEOUT_MAX_S with `mode: async`, else (sync, the
    default mode) ZYRA_SYNC_TIMEOUT_MAX_S."""
    run_request["if"] = {"properties": {"mode": {"const": "async"}}, "required": ["mode"]}
    run_request["then"] = {"properties": {"timeout_s": {"maximum": async_max_s}}}
    run_request["else"] = {"properties": {"timeout_s": {"maximum": sync_max_s}}}


def _declare_failed_runs(document: dict[str, Any]) -> None:
    """The body of a 422 that `fail_on_nonzero_exit` asked for, which routes name by
    reference beside FastAPI's own validation error (one status, two shapes)."""
    schema = FailedRunResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components = document["components"]["schemas"]
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components["FailedRunResponse"] = schema


def install_openapi(app: FastAPI, settings: Settings) -> None:
    generate = app.openapi  # FastAPI's own: builds the document once, then caches it

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _declare_stage_filter(document, settings.stages)
            _declare_failed_runs(document)
            _declare_job_wait(document, settings.max_job_wait_s)
            run_request = document["components"]["schemas"]["RunRequest"]
            _declare_timeouts(
                run_request, settings.sync_timeout_max_s, settings.async_timeout_max_s
            )
            if settings.allowed_path_prefixes:
                run_request["examples"] = [run_example(settings.allowed_path_prefixes[0])]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
