"""A job's stream as Server-Sent Events: `id: <seq>` and `data: <message>` per event."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.streams.follow import JobStream, StreamsClosedError
from runner.dependencies import DependencyUnavailableError

log = logging.getLogger("zyra.streams")

# X-Accel-Buffering: Nginx (and ingress-nginx) pass each event on at once.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStreamResponse(StreamingResponse):
    """Ends with the stream, or as soon as the client hangs up. Starlette listens for
    the hang-up only on servers older than ASGI 2.4 and otherwise learns of it from the
    next write: a stream of a quiet job would keep its slot until the job's next
    event. So this one always listens."""

    media_type = "text/event-stream"

    def __init__(self, stream: JobStream) -> None:
        super().__init__(_frames(stream), media_type="text/event-stream", headers=HEADERS)
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def respond() -> None:
                    await self.stream_response(send)
                    group.cancel_scope.cancel()

                group.start_soon(respond)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()


async def _frames(stream: JobStream) -> AsyncIterator[bytes]:
    try:
        async for event in stream:
            yield f"id: {event.seq}\ndata: {json.dumps(event.message())}\n\n".encode()
    except StreamsClosedError:
        return  # shutdown: the client reconnects (with Last-Event-ID) to another server
    except DependencyUnavailableError as exc:
        log.warning("event stream ended: %s", exc)  # the client reconnects when it is back
