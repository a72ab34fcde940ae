"""Liveness and readiness: no key needed."""

from fastapi import APIRouter

from api.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="The process is up")
async def healthz() -> HealthResponse:
    return HealthResponse()


@router.get("/readyz", response_model=HealthResponse, summary="Ready to run commands")
async def readyz() -> HealthResponse:
    return HealthResponse()
