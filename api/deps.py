"""FastAPI dependencies as `Annotated` aliases used by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import SecurityScopes
from starlette.requests import HTTPConnection

from api.jobs.service import JobService
from api.security.authentication import Authenticator
from api.security.principals import Principal, Scope
from api.security.schemes import ApiKeyScheme, BearerScheme
from runner.catalog import CommandCatalog

_api_key_scheme = ApiKeyScheme()
_bearer_scheme = BearerScheme()


def get_job_service(request: Request) -> JobService:
    return request.app.state.job_service


def get_catalog(request: Request) -> CommandCatalog:
    return request.app.state.catalog


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
    authenticator.require(principal, security_scopes.scopes)
    conn.state.principal = principal
    return principal


JobServiceDep = Annotated[JobService, Depends(get_job_service)]
CatalogDep = Annotated[CommandCatalog, Depends(get_catalog)]
CurrentPrincipal = Annotated[Principal, Security(authenticate)]  # any valid credential
ReadPrincipal = Annotated[Principal, Security(authenticate, scopes=[Scope.READ.value])]
RunPrincipal = Annotated[Principal, Security(authenticate, scopes=[Scope.RUN.value])]
AdminPrincipal = Annotated[Principal, Security(authenticate, scopes=[Scope.ADMIN.value])]
