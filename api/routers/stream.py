"""`WS /ws/jobs/{id}`: a job's events, history then live, then a normal close."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from api.deps import ReadPrincipal
from api.jobs.service import JobService
from api.security.credentials import accepted_subprotocol
from api.streaming import follow_events
from runner.dependencies import DependencyUnavailableError

router = APIRouter(tags=["stream"])

CLOSE_NORMAL = 1000
CLOSE_TRY_AGAIN = 1013  # a dependency is down
CLOSE_UNKNOWN_JOB = 4404


@router.websocket("/ws/jobs/{job_id}")
async def job_stream(
    websocket: WebSocket,
    job_id: str,
    principal: ReadPrincipal,  # else closed with 4401 or 4403 (api/security/authentication.py)
    since: int = Query(0, ge=0, description="resume after this seq"),
) -> None:
    service: JobService = websocket.app.state.job_service
    await websocket.accept(subprotocol=accepted_subprotocol(websocket))
    try:
        if await anyio.to_thread.run_sync(service.get, job_id, principal) is None:
            # Someone else's job too: the same close as for an unknown id.
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
