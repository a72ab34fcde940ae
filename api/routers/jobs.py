"""Jobs: read, list, cancel, download outputs, follow events (SSE)."""

from __future__ import annotations

import json
import mimetypes
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, status
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool

from api.deps import JobServiceDep, ReadPrincipal, RunPrincipal
from api.jobs.records import JobRecord, JobStatus
from api.jobs.service import JobService
from api.jobs.store import JobFilter
from api.schemas import CancelResponse, JobList, JobView
from api.security.principals import Principal
from api.streaming import follow_events
from runner.catalog import UnknownStageError
from runner.storage import results_prefix

router = APIRouter(prefix="/jobs", tags=["jobs"])
OWNER_QUERY = (
    "A principal id (`key:<name>`, `oauth2:<sub>`). Everyone sees only their own jobs but "
    "admin, which sees all, or this principal's; someone else's id gives others an empty page."
)


def no_such_job(job_id: str) -> HTTPException:
    """For an unknown id and for someone else's job alike: ids do not leak."""
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job with id {job_id!r}")


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
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> JobList:
    try:
        stage_name = service.catalog.canonical_stage(stage) if stage else None
    except UnknownStageError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["query", "stage"], "type": "enum", "msg": str(exc)}],
        ) from exc
    try:
        page = await anyio.to_thread.run_sync(
            service.list, JobFilter(status_, stage_name, command, owner), limit, cursor, principal
        )
    except ValueError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["query", "cursor"], "type": "value",
                     "msg": "not a cursor this service handed out; use next_cursor"}],
        ) from exc  # fmt: skip
    return JobList(jobs=[JobView.from_record(r) for r in page.jobs], next_cursor=page.next_cursor)


@router.get("/{job_id}", response_model=JobView, summary="A job's status, logs and outputs")
async def get_job(job_id: str, service: JobServiceDep, principal: ReadPrincipal) -> JobView:
    record = await anyio.to_thread.run_sync(service.show, job_id, principal)
    if record is None:
        raise no_such_job(job_id)
    return JobView.from_record(record)


@router.delete("/{job_id}", response_model=CancelResponse, summary="Cancel a job")
async def cancel_job(
    job_id: str, service: JobServiceDep, principal: RunPrincipal
) -> CancelResponse:
    try:
        record, changed = await anyio.to_thread.run_sync(service.cancel, job_id, principal)
    except KeyError:
        raise no_such_job(job_id) from None
    if changed:
        message = "cancelling: SIGTERM now, SIGKILL after the grace period"
    elif record.status.is_terminal():
        message = f"job already finished ({record.status.value}); nothing changed"
    else:
        message = "a sync run ends with its request; nothing changed"
    return CancelResponse(job_id=job_id, status=record.status.value, cancelled=changed,
                          message=message)  # fmt: skip


@router.get(
    "/{job_id}/events",
    summary="Follow a job's events as Server-Sent Events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(
    job_id: str,
    service: JobServiceDep,
    principal: ReadPrincipal,
    since: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[int | None, Header()] = None,
) -> StreamingResponse:
    await job_or_404(service, job_id, principal)
    after = max(since, last_event_id or 0)

    async def stream() -> AsyncIterator[bytes]:
        async for event in follow_events(service.events, job_id, after):
            yield f"id: {event.seq}\ndata: {json.dumps(event.message())}\n\n".encode()

    # X-Accel-Buffering: Nginx (and ingress-nginx) pass each event on at once.
    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache",
                                      "X-Accel-Buffering": "no"})  # fmt: skip


@router.get(
    "/{job_id}/download",
    summary="Download a job's output: the only one, ?file=NAME, or a zip of all",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}, "application/zip": {}}},
        307: {"description": "Redirect to a presigned URL (S3 with redirects on)"},
        404: {"description": "Unknown job, no outputs, or no output of that name"},
    },
)
async def download(
    job_id: str,
    service: JobServiceDep,
    principal: ReadPrincipal,
    file: str | None = Query(None, description="Output name, as listed in the job's outputs"),
) -> Response:
    record = await job_or_404(service, job_id, principal)
    names = [o.name for o in record.outputs]
    if not names:
        reason = (
            "this job produced no outputs"
            if record.status.is_terminal()
            else f"the job is {record.status.value}; outputs appear when it has finished"
        )
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=reason)
    if file is None and len(names) > 1:
        return await _zip_response(service, job_id, names)
    name = file if file is not None else names[0]
    if name not in names:
        # Only names the job recorded are served, so `file` cannot leave its results.
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no output named {name!r}; outputs: {', '.join(names)}",
        )
    key = f"{results_prefix(job_id)}/{name}"
    filename = PurePosixPath(name).name
    if service.settings.s3_redirect_downloads:
        url = service.storage.download_url(key, filename)
        if url:
            return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    [output] = [o for o in record.outputs if o.name == name]
    return StreamingResponse(
        iterate_in_threadpool(service.storage.open_chunks(key)),
        media_type=mimetypes.guess_type(filename)[0] or "application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Content-Length": str(output.size),
        },
    )


async def _zip_response(service: JobService, job_id: str, names: list[str]) -> Response:
    """All outputs in one zip, built in a spool file (not in memory), then streamed."""
    spool = service.settings.data_dir / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / f"{job_id}-{uuid.uuid4().hex}.zip"

    def build() -> None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in names:
                with archive.open(name, "w", force_zip64=True) as member:
                    for chunk in service.storage.open_chunks(f"{results_prefix(job_id)}/{name}"):
                        member.write(chunk)

    await anyio.to_thread.run_sync(build)
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"{job_id}.zip",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )
