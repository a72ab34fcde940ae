"""`POST /cli/run` and `GET /cli/commands`."""

from __future__ import annotations

from importlib.metadata import version

import anyio
from fastapi import APIRouter, HTTPException, Response, status

from api.deps import CatalogDep, CurrentPrincipal, JobServiceDep
from api.jobs.records import RunMode
from api.jobs.service import InputGoneError, ResourcesTooLargeError, TimeoutTooLongError
from api.schemas import AcceptedResponse, CatalogResponse, RunRequest, RunResponse
from runner.argv import InvalidArgsError
from runner.catalog import UnknownCommandError, UnknownStageError
from runner.execute import ExecutorUnavailableError

router = APIRouter(prefix="/cli", tags=["cli"])


@router.get("/commands", response_model=CatalogResponse, summary="Every exposed command")
async def list_commands(catalog: CatalogDep, _: CurrentPrincipal) -> dict:
    return {"zyra_version": version("zyra"), **catalog.describe()}


@router.post(
    "/run",
    response_model=RunResponse | AcceptedResponse,
    summary="Run one Zyra command",
    responses={
        404: {"description": "Unknown stage or command; the detail names the valid ones"},
        202: {"model": AcceptedResponse, "description": "mode async: the job is queued"},
        422: {"description": "An argument is unknown or has the wrong type or value"},
        503: {"description": "The command executor is restarting; retry"},
    },
)
async def run_command(
    body: RunRequest, service: JobServiceDep, principal: CurrentPrincipal, response: Response
) -> RunResponse | AcceptedResponse:
    try:
        prepared = service.prepare(
            body.stage, body.command, body.args, body.timeout_s, body.mode, body.resources
        )
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
    except ResourcesTooLargeError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["body", "resources", name], "type": "less_than_equal",
                     "msg": f"{name} may be at most {limit}"} for name, limit in exc.over],
        ) from exc  # fmt: skip
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
        callback = str(body.callback_url) if body.callback_url else None
        record = await anyio.to_thread.run_sync(service.submit, prepared, principal, callback)
        response.status_code = status.HTTP_202_ACCEPTED
        return AcceptedResponse(job_id=record.job_id)
    try:
        record = await service.run_sync(prepared, principal)
    except InputGoneError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["body", "args"], "type": "file_ref", "msg": str(exc)}],
        ) from exc
    except ExecutorUnavailableError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"command executor (template process) unavailable: {exc}; retry",
            headers={"Retry-After": "5"},
        ) from exc
    return RunResponse.from_record(record)
