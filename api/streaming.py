"""Following a job's event log: history first, then live, until the terminal event."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio

from runner.events import EventLog, JobEvent

POLL_S = 0.5


async def follow_events(log: EventLog, job_id: str, after: int = 0) -> AsyncIterator[JobEvent]:
    """Each client reads the log at its own pace: a slow one delays only itself."""
    while True:
        batch = await anyio.to_thread.run_sync(log.read, job_id, after)
        if not batch:
            batch = await anyio.to_thread.run_sync(log.wait, job_id, after, POLL_S)
        for event in batch:
            yield event
            after = event.seq
            if event.is_terminal:
                return
