"""Liveness and readiness: no key needed."""

import anyio
from fastapi import APIRouter, Request

from api.schemas import HealthResponse, ReadinessResponse, SandboxStatus
from runner.dependencies import DependencyUnavailableError
from runner.execute import SYNC_EXECUTOR, ExecutorUnavailableError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="The process is up")
async def healthz() -> HealthResponse:
    return HealthResponse()


@router.get(
    "/readyz",
    response_model=ReadinessResponse,
    summary="Ready to take jobs: its stores and its sync executor answer",
    responses={503: {"description": "A dependency (named in the body) is down"}},
)
async def readyz(request: Request) -> ReadinessResponse:
    service = request.app.state.job_service
    # Raises DependencyUnavailableError (503 naming it) when Redis is down.
    await anyio.to_thread.run_sync(service.store.get, "readiness-probe")
    executor = request.app.state.sync_executor
    down = executor.unavailable()
    if down is not None:  # the sync executor's container is restarting, or refuses
        raise DependencyUnavailableError(SYNC_EXECUTOR, ExecutorUnavailableError(down))
    return ReadinessResponse(sandbox=SandboxStatus.of(executor.sandbox))
