"""Many streams of one job read its log once: 500 clients woken by one event cost one
read of the store, not 500 (and on Redis, one round trip instead of 500).

A stream asks for a read (a function and its arguments: the job, the seq it has read up
to). If the same read is already under way and began after every notification that
stream has taken in (JobWatch.tick when it cleared its waiter), it cannot miss what the
stream was woken for: the stream waits for that read's answer. Otherwise it starts one
of its own, which later streams may share. Answers are shared as they are (streams
only iterate them). A stream that goes away does not cancel a read others wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio

from api.streams.watch import JobWatch

T = TypeVar("T")


@dataclass
class _Flight:
    started: int  # JobWatch.tick when the read began
    answer: asyncio.Future[Any]


class SharedReads:
    def __init__(self, watch: JobWatch, limiter: anyio.CapacityLimiter) -> None:
        self._watch, self._limiter = watch, limiter
        self._flights: dict[tuple[Any, ...], _Flight] = {}
        self.reads = 0  # reads actually made (for tests and benches)

    async def read(self, seen: int, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a thread of the pool, or the answer of the same read begun at or
        after tick `seen`."""
        key = (fn, *args)
        flight = self._flights.get(key)
        if flight is None or flight.started < seen:
            flight = self._begin(key, fn, args)
        return await asyncio.shield(flight.answer)

    def _begin(
        self, key: tuple[Any, ...], fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> _Flight:
        self.reads += 1
        answer = asyncio.ensure_future(anyio.to_thread.run_sync(fn, *args, limiter=self._limiter))
        flight = _Flight(self._watch.tick, answer)
        self._flights[key] = flight

        def done(finished: asyncio.Future[Any]) -> None:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if not finished.cancelled():
                finished.exception()  # seen: every stream that waited got it already

        answer.add_done_callback(done)
        return flight
