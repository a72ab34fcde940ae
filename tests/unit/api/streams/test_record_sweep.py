"""The sweep of records: readers of a job whose record ends wake, even though no
terminal event comes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from api.jobs.records import JobRecord
from api.jobs.store import SqliteJobStore
from api.streams.record_sweep import RecordSweep
from api.streams.watch import JobWatch, Waiter
from runner.lifecycle import JobStatus


def record(job_id: str, status: JobStatus = JobStatus.RUNNING) -> JobRecord:
    return JobRecord(job_id=job_id, status=status, mode="sync", stage="visualize",
                     command="heatmap", args={}, submitted_by="t")  # fmt: skip


async def woken(waiter: Waiter, within_s: float) -> bool:
    try:
        await asyncio.wait_for(waiter.wait(), within_s)
    except TimeoutError:
        return False
    return True


def test_ended_names_the_jobs_whose_record_ended_or_is_gone(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    store.save(record("running"))
    store.save(record("failed", JobStatus.FAILED))
    sweep = RecordSweep(store, JobWatch())
    assert sorted(sweep.ended(frozenset({"running", "failed", "unknown"}))) == [
        "failed",
        "unknown",
    ]


def test_readers_of_a_job_wake_when_its_record_ends(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    store.save(record("a"))
    store.save(record("b"))

    async def scenario() -> None:
        watch = JobWatch()
        watch.bind(asyncio.get_running_loop())
        sweep = RecordSweep(store, watch, interval_s=0.05)
        sweep.start()
        try:
            with watch.following("a", 0) as reader, watch.following("b", 0) as other:
                assert not await woken(reader, 0.2)
                store.save(record("a", JobStatus.SUCCEEDED))
                assert await woken(reader, 1.0)
                assert not await woken(other, 0.2)
        finally:
            await sweep.stop()

    asyncio.run(scenario())
