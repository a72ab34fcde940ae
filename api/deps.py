"""FastAPI dependencies as `Annotated` aliases used by the routers."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import SecurityScopes
from starlette.requests import HTTPConnection

from api.jobs.downloads import Downloads
from api.jobs.service import JobService
from api.observability.log_context import bind_principal
from api.schemas import RunRequest, strings_in
from api.security.authentication import Authenticator
from api.security.principals import Principal, Scope
from api.security.schemes import ApiKeyScheme, BearerScheme
from api.streams.follow import JobStreams
from api.uploads import UploadService
from runner.catalog import CommandCatalog

_api_key_scheme = ApiKeyScheme()
_bearer_scheme = BearerScheme()


# The getters are `async`: FastAPI runs a plain `def` dependency in its thread pool, a
# hand-over to another thread and back for an attribute lookup.
async def get_job_service(request: Request) -> JobService:
    return request.app.state.job_service


async def get_downloads(request: Request) -> Downloads:
    return request.app.state.downloads


async def get_uploads(request: Request) -> UploadService:
    return request.app.state.uploads


async def get_catalog(request: Request) -> CommandCatalog:
    return request.app.state.catalog


async def get_streams(conn: HTTPConnection) -> JobStreams:
    return conn.app.state.streams


async def authenticate(
    security_scopes: SecurityScopes,
    conn: HTTPConnection,
    _key: Annotated[None, Security(_api_key_scheme)],
    _token: Annotated[None, Security(_bearer_scheme)],
) -> Principal:
    """The caller, for HTTP and WebSocket routes alike: 401 (WebSocket: close 4401)
    without valid credentials, 403 (4403) naming a scope the route needs and the
    caller lacks. The principal is also left in `conn.state.principal`."""
    authenticator: Authenticator = conn.app.state.authenticator
    principal = await authenticator.identify(conn)  # maybe already, by the rate limiter
    bind_principal(principal.name)  # on the request's log lines: its name, never a key
    authenticator.require(principal, security_scopes.scopes)
    conn.state.principal = principal
    return principal


JobServiceDep = Annotated[JobService, Depends(get_job_service)]
DownloadsDep = Annotated[Downloads, Depends(get_downloads)]
UploadsDep = Annotated[UploadService, Depends(get_uploads)]
CatalogDep = Annotated[CommandCatalog, Depends(get_catalog)]
JobStreamsDep = Annotated[JobStreams, Depends(get_streams)]
ReadPrincipal = Annotated[Principal, Security(authenticate, scopes=[Scope.READ.value])]
RunPrincipal = Annotated[Principal, Security(authenticate, scopes=[Scope.RUN.value])]


def _args_too_long(args: dict[str, Any], max_length: int) -> list[dict[str, Any]]:
    return [
        {
            "loc": ["body", "args", name],
            "type": "string_too_long",
            "msg": f"text may have at most {max_length} characters (ZYRA_MAX_ARG_LENGTH)",
            "ctx": {"max_length": max_length},
        }
        for name, value in args.items()
        if any(len(text) > max_length for text in strings_in(value))
    ]


def _metadata_too_large(metadata: dict[str, Any] | None, max_bytes: int) -> list[dict[str, Any]]:
    size = len(json.dumps(metadata, separators=(",", ":"))) if metadata is not None else 0
    if size <= max_bytes:
        return []
    return [{
        "loc": ["body", "metadata"],
        "type": "too_long",
        "msg": f"metadata may have at most {max_bytes} bytes as compact JSON "
               f"(ZYRA_MAX_METADATA_BYTES); it has {size}",
        "ctx": {"max_bytes": max_bytes},
    }]  # fmt: skip


async def run_request_within_limits(
    body: RunRequest, request: Request, _caller: RunPrincipal
) -> RunRequest:
    """The body of `POST /cli/run`, its argument strings within ZYRA_MAX_ARG_LENGTH and
    its metadata within ZYRA_MAX_METADATA_BYTES;
    checked after authentication (`_caller`), as the rest of the body is: without a
    valid credential the answer is 401, whatever the body holds. Async: checks of a
    body already within the request size limit, not worth a hop to FastAPI's thread
    pool (where it runs a plain function)."""
    settings = request.app.state.settings
    problems = _args_too_long(body.args, settings.max_arg_length)
    problems += _metadata_too_large(body.metadata, settings.max_metadata_bytes)
    if problems:
        raise RequestValidationError(problems)
    return body


RunRequestWithinLimits = Annotated[RunRequest, Depends(run_request_within_limits)]
