"""Jobs: read, list, cancel, download outputs, follow events (SSE)."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool

from api.deps import DownloadsDep, JobServiceDep, JobStreamsDep, ReadPrincipal, RunPrincipal
from api.jobs.downloads import NoOutputError, OutputsGoneError, RedirectDownload, ZipDownload
from api.jobs.records import JobRecord
from api.jobs.service import JobService
from api.jobs.store import CURSOR_PATTERN, JobFilter
from api.request_errors import FieldProblem, InvalidRequestError, UnknownJobError
from api.responses import (
    AUTHENTICATED,
    RETRY_AFTER,
    ErrorResponse,
    failed_run,
    failed_run_or_invalid,
    not_found,
)
from api.schemas import CancelResponse, JobList, JobView
from api.security.principals import Principal
from api.streams.follow import resume_point
from api.streams.slots import StreamRefusedError, StreamRefusedResponse
from api.streams.sse import EventStreamResponse
from runner.lifecycle import JobStatus

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=AUTHENTICATED)
UNKNOWN_JOB = not_found("No job with that id (someone else's too: ids do not leak)")
OWNER_QUERY = (
    "A principal id (`key:<name>`, `oauth2:<sub>`). Everyone sees only their own jobs but "
    "admin, which sees all, or this principal's; someone else's id gives others an empty page."
)


def no_such_job(job_id: str) -> UnknownJobError:
    """For an unknown id and for someone else's job alike: ids do not leak."""
    return UnknownJobError(job_id)


async def job_or_404(service: JobService, job_id: str, principal: Principal) -> JobRecord:
    record = await anyio.to_thread.run_sync(service.get, job_id, principal)
    if record is None:
        raise no_such_job(job_id)
    return record


@router.get("", response_model=JobList, summary="List jobs, newest first")
async def list_jobs(
    service: JobServiceDep,
    principal: ReadPrincipal,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    stage: str | None = None,
    command: str | None = None,
    owner: Annotated[str | None, Query(description=OWNER_QUERY)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page"),
    ] = None,
) -> JobList:
    page = await anyio.to_thread.run_sync(
        service.list, JobFilter(status_, stage, command, owner), limit, cursor, principal
    )
    return JobList(jobs=[JobView.from_record(r) for r in page.jobs], next_cursor=page.next_cursor)


class WaitTooLongError(InvalidRequestError):
    def __init__(self, wait: float, maximum: float) -> None:
        why = f"wait may be at most {maximum:g} seconds (ZYRA_MAX_JOB_WAIT_S); got {wait:g}"
        super().__init__(why, [FieldProblem(loc=["query", "wait"], type="less_than_equal",
                                            msg=why, input=wait)])  # fmt: skip


@router.get(
    "/{job_id}",
    response_model=JobView,
    summary="A job's status, logs and outputs; with `wait`, once it has ended",
    responses={
        **UNKNOWN_JOB,
        **failed_run_or_invalid(
            "`wait` over ZYRA_MAX_JOB_WAIT_S; or, with `fail_on_nonzero_exit`, the job "
            "ended without succeeding (the body is then the job, with a `detail`)"
        ),
        503: {
            "model": StreamRefusedResponse,
            "description": "A long-poll over the caller's share of open streams "
            "(`limit` names the setting), or a dependency is down; retry",
            "headers": RETRY_AFTER,
        },
    },
)
async def get_job(
    job_id: str,
    service: JobServiceDep,
    streams: JobStreamsDep,
    principal: ReadPrincipal,
    request: Request,
    wait: Annotated[
        float,
        Query(ge=0, allow_inf_nan=False, description="Long-poll: answer as soon as the job "
              "has ended, or after this many seconds (at most ZYRA_MAX_JOB_WAIT_S) with "
              "its status then. Counts as an open stream while it waits."),
    ] = 0,
    fail_on_nonzero_exit: Annotated[
        bool,
        Query(description="A job that ended without succeeding answers 422 (the job, "
              "with a `detail`) instead of 200."),
    ] = False,
) -> JobView | JSONResponse:  # fmt: skip
    maximum = request.app.state.settings.max_job_wait_s
    if wait > maximum:
        raise WaitTooLongError(wait, maximum)
    if wait:
        record = await job_or_404(service, job_id, principal)  # first: ids do not leak
        if not record.status.is_terminal():
            try:
                await streams.until_ended(job_id, principal.id, wait)
            except StreamRefusedError as exc:
                return exc.response()
    record = await anyio.to_thread.run_sync(service.show, job_id, principal)
    if record is None:
        raise no_such_job(job_id)
    view = JobView.from_record(record)
    if fail_on_nonzero_exit and view.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        return failed_run(view)
    return view


@router.delete(
    "/{job_id}",
    response_model=CancelResponse,
    summary="Cancel a job",
    responses=UNKNOWN_JOB,
)
async def cancel_job(
    job_id: str, service: JobServiceDep, principal: RunPrincipal
) -> CancelResponse:
    record, changed = await anyio.to_thread.run_sync(service.cancel, job_id, principal)
    if changed:
        message = "cancelling: SIGTERM now, SIGKILL after the grace period"
    elif record.status.is_terminal():
        message = f"job already finished ({record.status.value}); nothing changed"
    else:
        message = "a sync run ends with its request; nothing changed"
    return CancelResponse(job_id=job_id, status=record.status, cancelled=changed,
                          message=message)  # fmt: skip


@router.get(
    "/{job_id}/events",
    summary="Follow a job's events as Server-Sent Events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`id: <seq>` and `data: <message>` per event, as on the "
            "WebSocket: history first, then live; ends after the terminal status",
        },
        204: {
            "description": "The job has ended and the client has had its end (`since` or "
            "`Last-Event-ID` at or past it): nothing to send (an EventSource stops "
            "reconnecting)"
        },
        **UNKNOWN_JOB,
        503: {
            "model": StreamRefusedResponse,
            "description": "Too many event streams open (`limit` names the setting), the "
            "server is shutting down, or a dependency is down (`dependency`); retry",
            "headers": RETRY_AFTER,
        },
    },
)
async def job_events(
    job_id: str,
    service: JobServiceDep,
    streams: JobStreamsDep,
    principal: ReadPrincipal,
    since: Annotated[
        int,
        Query(ge=0, description="Resume after this seq: any whole number (one at or past "
              "the end of a job that has ended gets 204)"),
    ] = 0,
    last_event_id: Annotated[
        str | None,
        Header(description="Sent by a reconnecting EventSource: the last `id` it received. "
               "Resumes after it (the later of it and `since`); a value that is not a "
               "non-negative whole number is ignored."),
    ] = None,
) -> Response:  # fmt: skip
    record = await job_or_404(service, job_id, principal)
    try:
        stream = await streams.open(record, principal.id, max(since, resume_point(last_event_id)))
    except StreamRefusedError as exc:
        return exc.response()
    if stream is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return EventStreamResponse(stream)


@router.get(
    "/{job_id}/download",
    summary="Download a job's output: the only one, ?file=NAME, or a zip of all",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"*/*": {}, "application/zip": {}},
            "description": "The output, typed as its name suggests (application/octet-stream "
            "when it suggests nothing), or a zip of all",
        },
        307: {"description": "Redirect to a presigned URL (S3 with redirects on)"},
        404: {
            "model": ErrorResponse,
            "description": "Unknown job, no outputs, or no output of that name",
        },
        410: {
            "model": ErrorResponse,
            "description": "The outputs are no longer in storage: expired "
            "(ZYRA_RESULT_TTL_S; the job's `outputs_expired_at` says when) or removed",
        },
    },
)
async def download(
    job_id: str,
    downloads: DownloadsDep,
    principal: ReadPrincipal,
    file: str | None = Query(None, description="Output name, as listed in the job's outputs"),
) -> Response:
    try:
        found = await anyio.to_thread.run_sync(downloads.open, job_id, principal, file)
    except KeyError:
        raise no_such_job(job_id) from None
    except NoOutputError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except OutputsGoneError as exc:
        raise HTTPException(status.HTTP_410_GONE, detail=str(exc)) from None
    if isinstance(found, RedirectDownload):
        return RedirectResponse(found.url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    if isinstance(found, ZipDownload):
        sent = BackgroundTask(found.path.unlink, missing_ok=True)  # the spool file goes
        return FileResponse(
            found.path, media_type="application/zip", filename=found.filename, background=sent
        )
    return StreamingResponse(
        iterate_in_threadpool(found.chunks),
        media_type=found.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{found.filename}"',
            "Content-Length": str(found.size),
        },
    )
