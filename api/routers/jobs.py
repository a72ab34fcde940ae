"""Jobs: read, list, cancel, download outputs, follow events (SSE)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, status
from fastapi.responses import FileResponse, StreamingResponse

from api.deps import CurrentPrincipal, JobServiceDep
from api.jobs.records import JobRecord, JobStatus
from api.jobs.service import JobService
from api.jobs.store import JobFilter
from api.schemas import CancelResponse, JobList, JobView
from api.streaming import follow_events

router = APIRouter(prefix="/jobs", tags=["jobs"])


async def job_or_404(service: JobService, job_id: str) -> JobRecord:
    record = await anyio.to_thread.run_sync(service.get, job_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job with id {job_id!r}")
    return record


@router.get("", response_model=JobList, summary="List jobs, newest first")
async def list_jobs(
    service: JobServiceDep,
    _: CurrentPrincipal,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    stage: str | None = None,
    command: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> JobList:
    stage_name = service.catalog.canonical_stage(stage) if stage else None
    try:
        page = await anyio.to_thread.run_sync(
            service.list, JobFilter(status_, stage_name, command), limit, cursor
        )
    except ValueError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["query", "cursor"], "type": "value",
                     "msg": "not a cursor this service handed out; use next_cursor"}],
        ) from exc  # fmt: skip
    return JobList(jobs=[JobView.from_record(r) for r in page.jobs], next_cursor=page.next_cursor)


@router.get("/{job_id}", response_model=JobView, summary="A job's status, logs and outputs")
async def get_job(job_id: str, service: JobServiceDep, _: CurrentPrincipal) -> JobView:
    record = await job_or_404(service, job_id)
    return JobView.from_record(await anyio.to_thread.run_sync(service.live_view, record))


@router.delete("/{job_id}", response_model=CancelResponse, summary="Cancel a job")
async def cancel_job(job_id: str, service: JobServiceDep, _: CurrentPrincipal) -> CancelResponse:
    await job_or_404(service, job_id)
    record, changed = await anyio.to_thread.run_sync(service.cancel, job_id)
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
    _: CurrentPrincipal,
    since: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[int | None, Header()] = None,
) -> StreamingResponse:
    await job_or_404(service, job_id)
    after = max(since, last_event_id or 0)

    async def stream() -> AsyncIterator[bytes]:
        async for event in follow_events(service.events, job_id, after):
            yield f"id: {event.seq}\ndata: {json.dumps(event.message())}\n\n".encode()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})  # fmt: skip


@router.get(
    "/{job_id}/download",
    summary="Download one output of a job",
    response_class=FileResponse,
    responses={404: {"description": "Unknown job, no outputs, or no output of that name"}},
)
async def download(
    job_id: str,
    service: JobServiceDep,
    _: CurrentPrincipal,
    file: str | None = Query(None, description="Output name, as listed in the job's outputs"),
) -> FileResponse:
    record = await job_or_404(service, job_id)
    names = [o.name for o in record.outputs]
    if not names:
        reason = (
            "this job produced no outputs"
            if record.status.is_terminal()
            else f"the job is {record.status.value}; outputs appear when it has finished"
        )
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=reason)
    if file is None:
        if len(names) > 1:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=[{"loc": ["query", "file"], "type": "missing",
                         "msg": "the job has several outputs; choose one of: " + ", ".join(names)}],
            )  # fmt: skip
        file = names[0]
    if file not in names:
        # Only names the job recorded are served, so `file` cannot leave its results.
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no output named {file!r}; outputs: {', '.join(names)}",
        )
    path: Path = service.settings.results_dir / job_id / file
    return FileResponse(path, filename=Path(file).name)
