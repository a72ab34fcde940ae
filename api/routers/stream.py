"""`WS /ws/jobs/{id}`: a job's events, history then live, then a normal close."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from api.jobs.service import JobService
from api.security.api_keys import ApiKeyRing
from api.streaming import follow_events
from runner.dependencies import DependencyUnavailableError

router = APIRouter(tags=["stream"])

CLOSE_NORMAL = 1000
CLOSE_TRY_AGAIN = 1013  # a dependency is down
CLOSE_UNAUTHENTICATED = 4401
CLOSE_UNKNOWN_JOB = 4404


@router.websocket("/ws/jobs/{job_id}")
async def job_stream(
    websocket: WebSocket,
    job_id: str,
    since: int = Query(0, ge=0, description="resume after this seq"),
    api_key: str | None = Query(None, description="for clients that cannot set headers"),
) -> None:
    ring: ApiKeyRing = websocket.app.state.key_ring
    service: JobService = websocket.app.state.job_service
    await websocket.accept()
    if ring.identify(websocket.headers.get("x-api-key") or api_key) is None:
        await websocket.close(CLOSE_UNAUTHENTICATED, "missing or invalid API key")
        return
    try:
        if await anyio.to_thread.run_sync(service.get, job_id) is None:
            await websocket.close(CLOSE_UNKNOWN_JOB, f"no job with id {job_id!r}")
            return
        async for event in follow_events(service.events, job_id, since):
            await websocket.send_json(event.message())
    except WebSocketDisconnect:
        return
    except DependencyUnavailableError as exc:
        await websocket.close(CLOSE_TRY_AGAIN, str(exc)[:120])
        return
    await websocket.close(CLOSE_NORMAL)
