"""Many streams of one job: every stream gets every event, in order, and the log is
read once per wake-up, not once per stream (embedded log and store, feeds running)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import anyio

from api.jobs.store import SqliteJobStore
from api.streams.follow import JobStreams
from api.streams.shared_reads import SharedReads
from api.streams.watch import JobWatch
from runner.events import SqliteEventLog
from runner.lifecycle import ExitReason, JobStatus
from tests.unit.api.streams.test_follow import job, messages, run

STREAMS = 200


def test_two_hundred_streams_of_one_job_get_everything_from_a_few_reads(tmp_path: Path) -> None:
    async def scenario(streams: JobStreams, log: SqliteEventLog, store: SqliteJobStore) -> None:
        record = job("busy")
        store.save(record)
        log.append("busy", status=JobStatus.QUEUED, progress=0.0)
        opened = [await streams.open(record, f"key:{i}", 0) for i in range(STREAMS)]
        readers = [asyncio.create_task(messages(s, within_s=20)) for s in opened]
        await asyncio.sleep(0.5)  # every stream has its history and waits
        before = streams.reads.reads
        for line in range(5):
            streams.notifying(log).append("busy", stdout=f"line {line}\n")
            await asyncio.sleep(0.05)
        streams.notifying(log).append(
            "busy", status=JobStatus.FAILED, exit_code=1, reason=ExitReason.ERROR
        )
        got = await asyncio.gather(*readers)
        assert all([m["seq"] for m in g] == list(range(1, 8)) for g in got)
        assert all(g[-1]["status"] == "failed" for g in got)
        # Six appends woke 200 streams: each stream reading for itself makes 3 reads per
        # wake-up (the events, an empty read, the end-of-log check), 3,600 in all. Shared:
        # those 3 per wake-up, and an append may wake twice (the API's own append, then
        # the file watcher).
        assert streams.reads.reads - before <= 6 * 3 * 2, streams.reads.reads - before

    run(tmp_path, scenario, max_streams=STREAMS, max_streams_per_principal=STREAMS)


class HeldRead:
    """A read of the log that waits until released; it answers which call it was and
    notes the tick each call began at."""

    def __init__(self, watch: JobWatch) -> None:
        self.watch = watch
        self.release = threading.Event()
        self.calls: list[int] = []

    def __call__(self, job_id: str, after: int) -> list[int]:
        self.calls.append(self.watch.tick)
        which = len(self.calls)
        self.release.wait(5)
        return [which]


def test_a_read_begun_before_a_streams_news_is_not_shared_with_it() -> None:
    """A stream woken by an append must not take the answer of a read that began before
    the append was notified: that answer may lack it, and the stream would wait for
    news it has already been told of."""

    async def scenario() -> None:
        watch = JobWatch()
        reads = SharedReads(watch, anyio.CapacityLimiter(4))
        slow_read = HeldRead(watch)

        early = asyncio.create_task(reads.read(watch.tick, slow_read, "j", 0))
        joined = asyncio.create_task(reads.read(watch.tick, slow_read, "j", 0))
        await asyncio.sleep(0.1)
        watch.notify(["j"])  # an append: what a stream woken now must see
        late = asyncio.create_task(reads.read(watch.tick, slow_read, "j", 0))
        await asyncio.sleep(0.1)
        slow_read.release.set()
        assert await early == await joined == [1]  # one read for both
        assert await late == [2]  # a read of its own, begun after the news
        assert slow_read.calls == [0, 1]

    asyncio.run(scenario())


def test_a_jobs_first_reader_does_not_share_a_read_begun_before_it_came() -> None:
    """Appends of a job nobody follows are not notified: a reader that comes after one
    must not take the answer of a read a reader gone since began before that append."""

    async def scenario() -> None:
        watch = JobWatch()
        watch.bind(asyncio.get_running_loop())
        reads = SharedReads(watch, anyio.CapacityLimiter(4))
        slow_read = HeldRead(watch)

        with watch.following("j", 0):
            gone = asyncio.create_task(reads.read(watch.tick, slow_read, "j", 0))
            await asyncio.sleep(0.1)
        watch.notify_threadsafe(["j"])  # an append while nobody follows: no notification
        with watch.following("j", 0):
            came = asyncio.create_task(reads.read(watch.tick, slow_read, "j", 0))
            await asyncio.sleep(0.1)
            slow_read.release.set()
            assert await gone == [1]
            assert await came == [2]  # a read of its own

    asyncio.run(scenario())
