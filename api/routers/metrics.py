"""`GET /metrics`: Prometheus text format, for an admin principal or the scrape token
(api/observability/scrape_auth.py). Not in the OpenAPI document: it is for Prometheus,
not for clients of the API."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api.observability.active_jobs import ActiveJobsCollector
from api.observability.exposition import render_for
from api.observability.scrape_auth import METRICS_PATH, allow_scrape

router = APIRouter(tags=["metrics"])


def _active_jobs(request: Request) -> ActiveJobsCollector:
    """One per process, built on first use."""
    state = request.app.state
    collector: ActiveJobsCollector | None = getattr(state, "active_jobs_metrics", None)
    if collector is None:
        collector = ActiveJobsCollector(state.job_service.store, state.settings.backend)
        state.active_jobs_metrics = collector
    return collector


@router.get(METRICS_PATH, include_in_schema=False)
async def metrics(request: Request, _: Annotated[None, Depends(allow_scrape)]) -> Response:
    accept = request.headers.get("accept")
    body, content_type = await anyio.to_thread.run_sync(render_for, _active_jobs(request), accept)
    return Response(body, headers={"Content-Type": content_type})
