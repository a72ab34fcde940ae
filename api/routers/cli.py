"""`POST /cli/run` and `GET /cli/commands`."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from api.deps import (
    CatalogDep,
    JobServiceDep,
    ReadPrincipal,
    RunPrincipal,
    RunRequestWithinLimits,
)
from api.jobs.records import CallbackTarget, RunMode
from api.limits.admission import admit_sync_run
from api.responses import (
    AUTHENTICATED,
    JOB_LINKS,
    ErrorResponse,
    UnknownNameResponse,
    failed_run,
    failed_run_or_invalid,
)
from api.routers.callbacks import CALLBACKS
from api.schemas import AcceptedResponse, CatalogResponse, JobView, RunRequest
from runner.lifecycle import JobStatus

router = APIRouter(prefix="/cli", tags=["cli"], responses=AUTHENTICATED)


@router.get("/commands", response_model=CatalogResponse, summary="Every exposed command")
async def list_commands(catalog: CatalogDep, _: ReadPrincipal) -> dict:
    return {"zyra_version": version("zyra"), **catalog.describe()}


@router.post(
    "/run",
    response_model=JobView | AcceptedResponse,
    summary="Run one Zyra command",
    callbacks=CALLBACKS,
    responses={
        400: {"model": ErrorResponse, "description": "The body is no JSON text (e.g. not UTF-8)"},
        413: {"model": ErrorResponse, "description": "The body is over ZYRA_MAX_REQUEST_BODY_MB"},
        404: {
            "model": UnknownNameResponse,
            "description": "Unknown stage or command; the detail names the valid ones",
        },
        200: {"description": "mode sync: the job, ended", "links": JOB_LINKS},
        202: {
            "model": AcceptedResponse,
            "description": "mode async: the job is queued",
            "links": JOB_LINKS,
        },
        **failed_run_or_invalid(
            "An argument is unknown or has the wrong type or value, or a stage of a `run` "
            "pipeline is refused (the detail names the stage and argument), or a URL (an "
            "argument or `callback_url`) leads to a refused destination; or, with "
            "`fail_on_nonzero_exit`, the sync run did not succeed (the body is then the "
            "job, with a `detail`)"
        ),
    },
)
async def run_command(
    body: RunRequestWithinLimits,
    service: JobServiceDep,
    principal: RunPrincipal,
    request: Request,
    response: Response,
) -> JobView | AcceptedResponse | JSONResponse:
    if body.mode is RunMode.SYNC:
        await admit_sync_run(request, principal)  # its own, stricter rate (api/limits)
    record = await service.run(
        body.stage,
        body.command,
        body.args,
        mode=body.mode,
        timeout_s=body.timeout_s,
        resources=body.resources,
        principal=principal,
        callback=callback_target(body),
        metadata=body.metadata,
    )
    if record.mode is RunMode.ASYNC:
        response.status_code = status.HTTP_202_ACCEPTED
        return AcceptedResponse(job_id=record.job_id)
    view = JobView.from_record(record)
    if body.fail_on_nonzero_exit and record.status is not JobStatus.SUCCEEDED:
        return failed_run(view)
    return view


def callback_target(body: RunRequest) -> CallbackTarget | None:
    if body.callback_url is None:
        return None
    return CallbackTarget(
        url=str(body.callback_url), secret=body.callback_secret, headers=body.callback_headers
    )
