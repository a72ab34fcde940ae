"""`POST /cli/run` and `GET /cli/commands`."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import APIRouter, HTTPException, status

from api.deps import CatalogDep, CurrentPrincipal, JobServiceDep
from api.jobs.records import RunMode
from api.jobs.service import TimeoutTooLongError
from api.schemas import CatalogResponse, RunRequest, RunResponse
from runner.argv import InvalidArgsError
from runner.catalog import UnknownCommandError, UnknownStageError
from runner.execute import ExecutorUnavailableError

router = APIRouter(prefix="/cli", tags=["cli"])


@router.get("/commands", response_model=CatalogResponse, summary="Every exposed command")
async def list_commands(catalog: CatalogDep, _: CurrentPrincipal) -> dict:
    return {"zyra_version": version("zyra"), **catalog.describe()}


@router.post(
    "/run",
    response_model=RunResponse,
    summary="Run one Zyra command",
    responses={
        404: {"description": "Unknown stage or command; the detail names the valid ones"},
        422: {"description": "An argument is unknown or has the wrong type or value"},
        503: {"description": "The command executor is restarting; retry"},
    },
)
async def run_command(
    body: RunRequest, service: JobServiceDep, principal: CurrentPrincipal
) -> RunResponse:
    try:
        prepared = service.prepare(body.stage, body.command, body.args, body.timeout_s)
    except UnknownStageError as exc:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail={"msg": str(exc), "field": "stage", "valid": exc.valid},
        ) from exc
    except UnknownCommandError as exc:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail={"msg": str(exc), "field": "command", "valid": exc.valid},
        ) from exc
    except InvalidArgsError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[p.as_detail() for p in exc.problems],
        ) from exc
    except TimeoutTooLongError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {
                    "loc": ["body", "timeout_s"],
                    "msg": str(exc),
                    "type": "less_than_equal",
                    "input": exc.requested,
                }
            ],
        ) from exc
    if body.mode is RunMode.ASYNC:
        raise HTTPException(
            status.HTTP_501_NOT_IMPLEMENTED,
            detail="mode 'async' is not available in this version yet; use 'sync'",
        )
    try:
        record = await service.run_sync(prepared, principal)
    except ExecutorUnavailableError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"command executor (template process) unavailable: {exc}; retry",
            headers={"Retry-After": "5"},
        ) from exc
    return RunResponse.from_record(record)
