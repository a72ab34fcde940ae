"""What routes answer besides their results, as the OpenAPI document says: the refusals
any authenticated route may give (one table, `AUTHENTICATED`, that the routers'
constructors apply to every route they hold), the bodies of the errors routes raise,
and the links from an answer naming a job or an upload to what can be done with it."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from fastapi import status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.limits.rates import LimitName
from api.schemas import FailedRunResponse, JobView

# FastAPI's own 422 body, which it adds to every route with parameters (RequestValidationError).
VALIDATION_ERROR = {"$ref": "#/components/schemas/HTTPValidationError"}


class ErrorResponse(BaseModel):
    """An answer that is not the operation's result; `detail` says why."""

    detail: str


class UnknownName(BaseModel):
    msg: str
    field: Literal["stage", "command"] = Field(description="Which name was not found.")
    valid: list[str] = Field(description="The names this server offers there.")


class UnknownNameResponse(BaseModel):
    detail: UnknownName


class LimitExceededResponse(BaseModel):
    detail: str
    limit: LimitName = Field(description="The limit reached (docs/security.md).")
    retry_after_s: int = Field(description="Seconds until a retry may pass, as `Retry-After`.")


class DependencyDownResponse(BaseModel):
    detail: str
    dependency: str = Field(description="What is down, e.g. `Redis` or `sync executor`.")


Responses = dict[int | str, dict[str, Any]]


def _required_header(description: str, type_: str) -> dict[str, Any]:
    return {"description": description, "required": True, "schema": {"type": type_}}


CHALLENGE = {
    "WWW-Authenticate": _required_header("The credentials accepted, and what was wrong", "string")
}
RETRY_AFTER = {"Retry-After": _required_header("Seconds to wait before retrying", "integer")}

AUTHENTICATED: Responses = {
    401: {
        "model": ErrorResponse,
        "description": "No credentials, or ones this server does not accept; the detail says "
        "which and how to send them",
        "headers": CHALLENGE,
    },
    403: {
        "model": ErrorResponse,
        "description": "The credentials lack a scope this operation needs (named in the detail)",
        "headers": CHALLENGE,
    },
    429: {
        "model": LimitExceededResponse,
        "description": "A rate limit or a cap on concurrent runs is reached (`limit` names it)",
        "headers": RETRY_AFTER,
    },
    503: {
        "model": DependencyDownResponse,
        "description": "A dependency is down (`dependency` names it: Redis, the sync executor, "
        "the OAuth2 issuer's keys); retry",
        "headers": RETRY_AFTER,
    },
}


def failed_run_or_invalid(description: str) -> Responses:
    """A 422 of either shape: FastAPI's validation error, or the job that did not succeed
    (`fail_on_nonzero_exit`), whose schema api/openapi.py adds."""
    schemas = [VALIDATION_ERROR, {"$ref": "#/components/schemas/FailedRunResponse"}]
    return {
        422: {
            "description": description,
            "content": {"application/json": {"schema": {"anyOf": schemas}}},
        }
    }


def failed_run(view: JobView) -> JSONResponse:
    """The answer `fail_on_nonzero_exit` asks for: 422, the job and one line of why."""
    body = FailedRunResponse.of(view).model_dump(mode="json")
    return JSONResponse(body, status.HTTP_422_UNPROCESSABLE_CONTENT)


def not_found(description: str) -> Responses:
    return {404: {"model": ErrorResponse, "description": description}}


def _link(path: str, method: str, parameter: str, description: str) -> dict[str, Any]:
    """An OpenAPI link: the operation as a JSON pointer in a URI fragment, its path
    parameter taken from the answer's field of the same name."""
    pointer = quote(path.replace("~", "~0").replace("/", "~1"), safe="~")
    return {
        "operationRef": f"#/paths/{pointer}/{method}",
        "parameters": {parameter: f"$response.body#/{parameter}"},
        "description": description,
    }


JOB_LINKS = {
    "GetJob": _link("/jobs/{job_id}", "get", "job_id", "The job's status, logs and outputs"),
    "FollowJobEvents": _link("/jobs/{job_id}/events", "get", "job_id", "Its events (SSE)"),
    "DownloadJobOutputs": _link("/jobs/{job_id}/download", "get", "job_id", "Its outputs"),
    "CancelJob": _link("/jobs/{job_id}", "delete", "job_id", "Cancel it"),
}
UPLOAD_LINKS = {
    "GetUpload": _link("/files/{file_id}", "get", "file_id", "The upload's metadata"),
}
