"""`POST /cli/run` and `GET /cli/commands`."""

from __future__ import annotations

from functools import partial
from importlib.metadata import version

import anyio
from fastapi import APIRouter, HTTPException, Request, Response, status

from api.deps import CatalogDep, JobServiceDep, ReadPrincipal, RunPrincipal
from api.jobs.callbacks import callback_refusal
from api.jobs.records import RunMode
from api.jobs.service import InputGoneError, ResourcesTooLargeError, TimeoutTooLongError
from api.limits.admission import admit_sync_run
from api.schemas import AcceptedResponse, CatalogResponse, RunRequest, RunResponse
from runner.argv import InvalidArgsError
from runner.catalog import UnknownCommandError, UnknownStageError
from runner.dependencies import DependencyUnavailableError
from runner.execute import SYNC_EXECUTOR, ExecutorUnavailableError

router = APIRouter(prefix="/cli", tags=["cli"])


@router.get("/commands", response_model=CatalogResponse, summary="Every exposed command")
async def list_commands(catalog: CatalogDep, _: ReadPrincipal) -> dict:
    return {"zyra_version": version("zyra"), **catalog.describe()}


@router.post(
    "/run",
    response_model=RunResponse | AcceptedResponse,
    summary="Run one Zyra command",
    responses={
        404: {"description": "Unknown stage or command; the detail names the valid ones"},
        202: {"model": AcceptedResponse, "description": "mode async: the job is queued"},
        422: {
            "description": "An argument is unknown or has the wrong type or value, or a "
            "stage of a `run` pipeline is refused (the detail names the stage and argument), "
            "or a URL (an argument or `callback_url`) leads to a refused destination"
        },
        429: {
            "description": "A rate limit, or the cap on the caller's sync runs executing at "
            "once, is reached (`limit` names it); retry after `Retry-After` seconds"
        },
        503: {"description": "The command executor is restarting; retry"},
    },
)
async def run_command(
    body: RunRequest,
    service: JobServiceDep,
    principal: RunPrincipal,
    request: Request,
    response: Response,
) -> RunResponse | AcceptedResponse:
    if body.mode is RunMode.SYNC:
        await admit_sync_run(request, principal)  # its own, stricter rate (api/limits)
    callback = str(body.callback_url) if body.callback_url else None
    if callback is not None:
        # Off the event loop: the name is resolved.
        refusal = await anyio.to_thread.run_sync(callback_refusal, callback, service.outbound)
        if refusal:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=[{"loc": ["body", "callback_url"], "msg": refusal, "type": "url",
                         "input": callback}],
            )  # fmt: skip
    try:
        # Off the event loop: a `run` pipeline is read (maybe from S3) and parsed first.
        prepare = partial(service.prepare, body.stage, body.command, body.args, principal=principal)
        prepared = await anyio.to_thread.run_sync(
            prepare, body.timeout_s, body.mode, body.resources
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
        # 503 naming it (and Retry-After), as for any dependency that is down.
        raise DependencyUnavailableError(SYNC_EXECUTOR, exc) from exc
    return RunResponse.from_record(record)
