"""One waiter per API process: readers of a job's events wait here, on an asyncio
event each, never in a thread. Whatever learns that a job has news (a feed of the
event log, a sweep of records, the API's own appends) calls `notify`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

from runner.events import EventLog, JobEvent


class Waiter:
    """One reader: woken when its job may have news. `after` is the last seq it has
    read, where a feed that must name a position starts for it."""

    __slots__ = ("_event", "after")

    def __init__(self, after: int) -> None:
        self.after = after
        self._event = asyncio.Event()

    def clear(self) -> None:
        """Before each read: news that comes while reading is not lost."""
        self._event.clear()

    async def wait(self) -> None:
        await self._event.wait()

    def wake(self) -> None:
        self._event.set()


class JobWatch:
    """The readers of each job. Its methods run on the event loop but for
    `notify_threadsafe` and `followed`, which feeds in threads use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[Waiter]] = {}
        # Replaced, never changed in place: a thread may iterate the one it holds.
        self.followed: frozenset[str] = frozenset()
        self.closed = False
        self._on_new_job: list[Callable[[], None]] = []
        # Counts notifications: a read begun at tick t sees every append notified up to
        # t (a notification comes once the append is stored). Streams share reads by it.
        self.tick = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def on_new_job(self, callback: Callable[[], None]) -> None:
        """`callback()` (on the loop) whenever a job gains its first reader."""
        self._on_new_job.append(callback)

    @contextmanager
    def following(self, job_id: str, after: int) -> Iterator[Waiter]:
        waiter = Waiter(after)
        waiters = self._waiters.setdefault(job_id, set())
        waiters.add(waiter)
        if len(waiters) == 1:
            self.followed = frozenset(self._waiters)
            # Appends while nobody followed it were not notified: no read begun before
            # now may be shared with this reader (api/streams/shared_reads.py).
            self.tick += 1
            for callback in self._on_new_job:
                callback()
        if self.closed:
            waiter.wake()
        try:
            yield waiter
        finally:
            waiters.discard(waiter)
            if not waiters and self._waiters.get(job_id) is waiters:
                del self._waiters[job_id]
                self.followed = frozenset(self._waiters)

    def position(self, job_id: str) -> int:
        """The least seq the readers of `job_id` have read."""
        return min((w.after for w in self._waiters.get(job_id, ())), default=0)

    def notify(self, job_ids: Collection[str]) -> None:
        self.tick += 1
        for job_id in job_ids:
            for waiter in self._waiters.get(job_id, ()):
                waiter.wake()

    def notify_all(self) -> None:
        self.notify(tuple(self._waiters))

    def notify_threadsafe(self, job_ids: Collection[str] | None = None) -> None:
        """From any thread; None: every job followed (the log is unreachable: each reader
        finds out for itself). Jobs nobody follows wake nothing: most of a sync run's
        events would each wake the loop for no reader. A reader that comes meanwhile
        is in `followed` before its first read, which sees what was stored before."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if job_ids is not None and self.followed.isdisjoint(job_ids):
            return
        wake = self.notify_all if job_ids is None else lambda: self.notify(job_ids)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(wake)

    def close(self) -> None:
        """Shutdown: every reader wakes, sees `closed` and ends its stream."""
        self.closed = True
        self.notify_all()


class NotifyingEventLog:
    """An event log whose appends by this process wake its readers at once, before any
    feed has noticed them."""

    def __init__(self, log: EventLog, watch: JobWatch) -> None:
        self._log, self._watch = log, watch

    def append(self, job_id: str, **fields: Any) -> JobEvent:
        event = self._log.append(job_id, **fields)
        self._watch.notify_threadsafe((job_id,))
        return event

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)
