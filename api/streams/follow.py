"""One client's stream of a job's events: its history, then what comes, then the end.

Every stream ends: at the job's terminal event; or, when the job's record has ended
and its log holds no terminal event (records from before sync runs had events, a
process that died between the two writes), after one terminal message built from the
record, numbered as the next event would have been; or at once when the client
resumes after the end (`since` past everything, the id of the terminal message).

Readers wait on the process's `JobWatch`, fed by one loop per process
(sqlite_feed.py, redis_feed.py) and a sweep of records (record_sweep.py); a reader
uses a thread only to read, from a small pool of its own, so streams never hold up
the threads other requests need."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from enum import Enum
from typing import Protocol

import anyio

from api.jobs.records import JobRecord, terminal_event
from api.jobs.store import JobStore
from api.settings import Settings
from api.streams.record_sweep import RecordSweep
from api.streams.redis_feed import RedisEventFeed
from api.streams.shared_reads import SharedReads
from api.streams.shutdown import on_exit_signals
from api.streams.slots import StreamRefusedError, StreamSlot, StreamSlots
from api.streams.sqlite_feed import SqliteEventFeed
from api.streams.watch import JobWatch, NotifyingEventLog
from runner.events import EventLog, JobEvent, RedisEventLog, SqliteEventLog

MAX_SEQ = 2**63 - 1  # the largest seq either log can hold: a larger `since` is past them all
READERS = 8  # threads reading logs for streams at once (their own pool)


class StreamsClosedError(Exception):
    """The server is shutting down: every stream ends."""


def shutting_down() -> StreamRefusedError:
    return StreamRefusedError(None, "the server is shutting down; retry in a moment")


class Background(Protocol):
    """A feed or the sweep: started with the streams, stopped with them."""

    def start(self) -> None: ...
    async def stop(self) -> None: ...


class Step(Enum):
    WAIT = "wait"  # the job goes on: wait for news
    READ = "read"  # events came meanwhile: read them
    END = "end"


class JobStream:
    """One client's events (an async iterator of JobEvents); `aclose` when done, which
    frees its slot."""

    def __init__(self, events: AsyncGenerator[JobEvent, None], slot: StreamSlot) -> None:
        self._events, self._slot = events, slot
        self._first: JobEvent | None = None

    def __aiter__(self) -> JobStream:
        return self

    async def __anext__(self) -> JobEvent:
        if self._first is not None:
            event, self._first = self._first, None
            return event
        return await self._events.__anext__()

    async def is_empty(self) -> bool:
        """Whether the stream ends without a message (the first one is kept for later).
        Only for a job that has ended: otherwise this waits for its next event."""
        self._first = await anext(self._events, None)
        return self._first is None

    async def aclose(self) -> None:
        self._slot.release()
        await self._events.aclose()


class JobStreams:
    """This process's event streams: its waiter, its feed, its slots."""

    def __init__(
        self, events: EventLog, store: JobStore, watch: JobWatch, slots: StreamSlots
    ) -> None:
        self.events, self.store, self.watch, self.slots = events, store, watch, slots
        self.reads = SharedReads(watch, anyio.CapacityLimiter(READERS))
        self._background: list[Background] = []
        self._restore_signals: Callable[[], None] = lambda: None

    @classmethod
    def start(cls, events: EventLog, store: JobStore, settings: Settings) -> JobStreams:
        """On the event loop (the lifespan): the waiter, the feed that fits `events`, the
        sweep of records; SIGTERM and SIGINT end every stream (shutdown.py)."""
        watch = JobWatch()
        watch.bind(asyncio.get_running_loop())
        slots = StreamSlots(settings.max_streams, settings.max_streams_per_principal)
        streams = cls(events, store, watch, slots)
        feed: Background
        if isinstance(events, RedisEventLog):
            assert settings.redis_url is not None
            feed = RedisEventFeed(settings.redis_url, lambda job_id: events.keys(job_id)[0], watch)
        elif isinstance(events, SqliteEventLog):
            feed = SqliteEventFeed(events.path, watch)
        else:
            raise TypeError(f"no event feed for {type(events).__name__}")
        streams._background = [feed, RecordSweep(store, watch)]
        for task in streams._background:
            task.start()
        streams._restore_signals = on_exit_signals(streams.end_all)
        return streams

    def notifying(self, log: EventLog) -> EventLog:
        """`log`, its appends by this process waking readers at once."""
        return NotifyingEventLog(log, self.watch)  # type: ignore[return-value]

    def end_all(self) -> None:
        """Every stream ends (a WebSocket with 1001), and no new one opens."""
        self.watch.close()

    async def close(self) -> None:
        self.end_all()
        self._restore_signals()
        for task in self._background:
            await task.stop()

    async def open(self, record: JobRecord, principal_id: str, after: int) -> JobStream | None:
        """`record`'s events after seq `after` (any whole number: past MAX_SEQ means
        after everything). None when the job has ended and the client has seen its end.
        Raises StreamRefusedError: no slot left, or the server is shutting down."""
        if self.watch.closed:
            raise shutting_down()
        slot = self.slots.take(principal_id)
        stream = JobStream(self._follow(record.job_id, min(after, MAX_SEQ)), slot)
        if record.status.is_terminal():
            try:
                empty = await stream.is_empty()
            except BaseException as exc:
                await stream.aclose()
                if isinstance(exc, StreamsClosedError):
                    raise shutting_down() from None
                raise
            if empty:
                await stream.aclose()
                return None
        return stream

    async def until_ended(self, job_id: str, principal_id: str, timeout_s: float) -> None:
        """Return once the job's record has ended (or is gone), the server is shutting
        down, or `timeout_s` has passed: a long-poll. Holds one of the principal's
        stream slots meanwhile; StreamRefusedError when it has none left."""
        if timeout_s <= 0 or self.watch.closed:
            return
        slot = self.slots.take(principal_id, kind="long_poll")
        try:
            with anyio.move_on_after(timeout_s), self.watch.following(job_id, 0) as waiter:
                while not self.watch.closed:
                    waiter.clear()  # first: an end stored while reading wakes the wait
                    seen = self.watch.tick
                    record = await self.reads.read(seen, self.store.get, job_id)
                    if record is None or record.status.is_terminal():
                        return
                    await waiter.wait()
        finally:
            slot.release()

    async def _follow(self, job_id: str, after: int) -> AsyncGenerator[JobEvent, None]:
        with self.watch.following(job_id, after) as waiter:
            while True:
                waiter.clear()  # first: news that comes while reading wakes the wait below
                seen = self.watch.tick  # every notification up to here is taken in
                if self.watch.closed:
                    raise StreamsClosedError("the server is shutting down")
                batch = await self.reads.read(seen, self.events.read, job_id, after)
                for event in batch:
                    yield event
                    after = waiter.after = event.seq
                    if event.is_terminal:
                        return
                    if self.watch.closed:
                        raise StreamsClosedError("the server is shutting down")
                if batch:
                    continue
                step, last_word = await self.reads.read(seen, self._end_of, job_id, after)
                if step is Step.READ:
                    continue
                if step is Step.END:
                    if last_word is not None:
                        yield last_word
                    return
                await waiter.wait()

    def _end_of(self, job_id: str, after: int) -> tuple[Step, JobEvent | None]:
        """With nothing after `after` in the log: whether the stream goes on, and the
        terminal message the log lacks, if the client has not had one."""
        record = self.store.get(job_id)
        if record is None:
            return Step.END, None
        if not record.status.is_terminal():
            return Step.WAIT, None
        near = self.events.read(job_id, max(after - 1, 0), limit=2)
        if any(e.seq > after for e in near):
            return Step.READ, None  # appended since the read that found nothing
        if after == 0 or any(e.seq == after and not e.is_terminal for e in near):
            return Step.END, last_word(record, after + 1)
        # The client has had the terminal event, the message built for it, or claims
        # more than there is.
        return Step.END, None


def last_word(record: JobRecord, seq: int) -> JobEvent:
    """The terminal event of an ended record, as its log holds it (or will)."""
    return JobEvent(seq=seq, **terminal_event(record))


def resume_point(last_event_id: str | None) -> int:
    """The seq after which a client resumes, from the `Last-Event-ID` its EventSource
    sends: a seq this service handed out. Anything else (another server's id, text, a
    negative number) is ignored, as if absent: EventSource sends back whatever id it
    was given and would give up on an error."""
    value = (last_event_id or "").strip()
    if not (value.isascii() and value.isdigit()):
        return 0
    return int(value) if len(value) <= len(str(MAX_SEQ)) else MAX_SEQ + 1
