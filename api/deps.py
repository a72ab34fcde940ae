"""FastAPI dependencies as `Annotated` aliases used by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from api.jobs.service import JobService
from api.security.api_keys import ApiKeyRing
from runner.catalog import CommandCatalog

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_job_service(request: Request) -> JobService:
    return request.app.state.job_service


def get_catalog(request: Request) -> CommandCatalog:
    return request.app.state.catalog


def require_principal(
    request: Request, api_key: Annotated[str | None, Security(_api_key_header)]
) -> str:
    """The caller's key name; 401 without a valid key."""
    ring: ApiKeyRing = request.app.state.key_ring
    name = ring.identify(api_key)
    if name is None:
        detail = (
            ("missing X-API-Key header" if not api_key else "invalid API key")
            if ring.configured
            else "no API keys are configured on this server (set ZYRA_API_KEYS)"
        )
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "APIKey"}
        )
    return name


JobServiceDep = Annotated[JobService, Depends(get_job_service)]
CatalogDep = Annotated[CommandCatalog, Depends(get_catalog)]
CurrentPrincipal = Annotated[str, Depends(require_principal)]
