"""`GET /jobs/{id}` and the download of a job's outputs."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse

from api.deps import CurrentPrincipal, JobServiceDep
from api.jobs.records import JobRecord
from api.schemas import JobView

router = APIRouter(prefix="/jobs", tags=["jobs"])


def _job_or_404(service: JobServiceDep, job_id: str) -> JobRecord:
    record = service.get(job_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job with id {job_id!r}")
    return record


@router.get("/{job_id}", response_model=JobView, summary="A job's status, logs and outputs")
async def get_job(job_id: str, service: JobServiceDep, _: CurrentPrincipal) -> JobView:
    return JobView.from_record(_job_or_404(service, job_id))


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
    record = _job_or_404(service, job_id)
    names = [o.name for o in record.outputs]
    if not names:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="this job produced no outputs")
    if file is None:
        if len(names) > 1:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=[
                    {
                        "loc": ["query", "file"],
                        "type": "missing",
                        "msg": "the job has several outputs; choose one of: " + ", ".join(names),
                    }
                ],
            )
        file = names[0]
    if file not in names:
        # Only names the job recorded are served, so `file` cannot leave its results.
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no output named {file!r}; outputs: {', '.join(names)}",
        )
    path: Path = service.settings.results_dir / job_id / file
    return FileResponse(path, filename=Path(file).name)
