"""`WS /ws/jobs/{id}`: a job's events, history then live, then a normal close (1000).

Other closes: 1001 when the server shuts down, 1013 while a dependency is down or too
many streams are open (the reason names the setting), 4404 for an unknown job."""

from __future__ import annotations

import anyio
from anyio.abc import TaskGroup
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from api.deps import JobStreamsDep, ReadPrincipal
from api.jobs.service import JobService
from api.security.authentication import close_websocket
from api.security.credentials import accepted_subprotocol
from api.streams.follow import JobStream, StreamsClosedError
from api.streams.slots import StreamRefusedError
from runner.dependencies import DependencyUnavailableError

router = APIRouter(tags=["stream"])

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # the server is shutting down
CLOSE_TRY_AGAIN = 1013  # a dependency is down, or too many streams are open
CLOSE_UNKNOWN_JOB = 4404

Close = tuple[int, str]


@router.websocket("/ws/jobs/{job_id}")
async def job_stream(
    websocket: WebSocket,
    job_id: str,
    principal: ReadPrincipal,  # else closed with 4401 or 4403 (api/security/authentication.py)
    streams: JobStreamsDep,
    since: int = Query(0, ge=0, description="resume after this seq (any whole number)"),
) -> None:
    service: JobService = websocket.app.state.job_service
    await websocket.accept(subprotocol=accepted_subprotocol(websocket))
    try:
        record = await anyio.to_thread.run_sync(service.get, job_id, principal)
        if record is None:
            # Someone else's job too: the same close as for an unknown id.
            await close_websocket(websocket, CLOSE_UNKNOWN_JOB, f"no job with id {job_id!r}")
            return
        stream = await streams.open(record, principal.id, since)
    except DependencyUnavailableError as exc:
        await close_websocket(websocket, CLOSE_TRY_AGAIN, str(exc))
        return
    except StreamRefusedError as exc:
        code = CLOSE_TRY_AGAIN if exc.limit is not None else CLOSE_GOING_AWAY
        await close_websocket(websocket, code, exc.detail)
        return
    if stream is None:  # the job has ended, and the client has had its end
        await close_websocket(websocket, CLOSE_NORMAL, "")
        return
    close = await _relay(websocket, stream)
    if close is not None:
        await close_websocket(websocket, *close)


async def _relay(websocket: WebSocket, stream: JobStream) -> Close | None:
    """Send the stream's events until it ends; how to close, or None when the client
    has left first (which must be noticed while the job is quiet too: the stream holds
    a slot)."""
    close: Close | None = None

    async def send_events(group: TaskGroup) -> None:
        nonlocal close
        try:
            async for event in stream:
                await websocket.send_json(event.message())
            close = (CLOSE_NORMAL, "")
        except StreamsClosedError:
            close = (CLOSE_GOING_AWAY, "the server is shutting down")
        except DependencyUnavailableError as exc:
            close = (CLOSE_TRY_AGAIN, str(exc))
        except (WebSocketDisconnect, OSError):
            pass  # the client has left
        group.cancel_scope.cancel()

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(send_events, group)
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass  # clients have nothing to say; what they send is ignored
            group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()
    return close
