"""Liveness and readiness: no key needed."""

import anyio
from fastapi import APIRouter, Request

from api.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="The process is up")
async def healthz() -> HealthResponse:
    return HealthResponse()


@router.get(
    "/readyz",
    response_model=HealthResponse,
    summary="Ready to take jobs: its stores answer",
    responses={503: {"description": "A dependency (named in the body) is down"}},
)
async def readyz(request: Request) -> HealthResponse:
    service = request.app.state.job_service
    # Raises DependencyUnavailableError (503 naming it) when Redis is down.
    await anyio.to_thread.run_sync(service.store.get, "readiness-probe")
    return HealthResponse()
