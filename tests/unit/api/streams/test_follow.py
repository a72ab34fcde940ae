"""One client's stream: history, then live, then the end, whatever the job and wherever
the client resumes (embedded log and store, the process's feeds running)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from api.jobs.records import JobRecord, terminal_event
from api.jobs.store import SqliteJobStore
from api.settings import Settings
from api.streams.follow import MAX_SEQ, JobStream, JobStreams, StreamsClosedError, resume_point
from api.streams.slots import StreamRefusedError
from runner.events import SqliteEventLog
from runner.lifecycle import ExitReason, JobStatus

Scenario = Callable[[JobStreams, SqliteEventLog, SqliteJobStore], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario, **settings: int) -> None:
    log = SqliteEventLog(tmp_path / "events.sqlite3")
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")

    async def started() -> None:
        streams = JobStreams.start(log, store, Settings(data_dir=tmp_path, **settings))
        try:
            await scenario(streams, log, store)
        finally:
            await streams.close()

    asyncio.run(started())


def job(job_id: str, status: JobStatus = JobStatus.RUNNING) -> JobRecord:
    ended = status.is_terminal()
    return JobRecord(job_id=job_id, status=status, mode="async", stage="visualize",
                     command="heatmap", args={}, submitted_by="t",
                     exit_code=2 if ended else None,
                     reason=ExitReason.ERROR if ended else None)  # fmt: skip


async def messages(stream: JobStream | None, within_s: float = 5) -> list[dict]:
    assert stream is not None
    try:
        return await asyncio.wait_for(_collect(stream), within_s)
    finally:
        await stream.aclose()


async def _collect(stream: JobStream) -> list[dict]:
    return [event.message() async for event in stream]


def append_history(log: SqliteEventLog, job_id: str, terminal: bool) -> None:
    log.append(job_id, status=JobStatus.QUEUED, progress=0.0)
    log.append(job_id, stdout="hello\n")
    if terminal:
        log.append(job_id, status=JobStatus.FAILED, exit_code=2, reason=ExitReason.ERROR)


def test_history_ends_at_the_terminal_event(tmp_path: Path) -> None:
    async def scenario(streams: JobStreams, log: SqliteEventLog, store: SqliteJobStore) -> None:
        record = job("a", JobStatus.FAILED)
        store.save(record)
        append_history(log, "a", terminal=True)
        got = await messages(await streams.open(record, "key:t", 0))
        assert [m["seq"] for m in got] == [1, 2, 3]
        assert got[-1]["status"] == "failed"
        assert await messages(await streams.open(record, "key:t", 1)) == got[1:]
        assert await streams.open(record, "key:t", 3) is None  # it has had the end
        assert await streams.open(record, "key:t", 2**70) is None

    run(tmp_path, scenario)


def test_a_record_that_ended_without_its_terminal_event_gets_one_built_from_it(
    tmp_path: Path,
) -> None:
    async def scenario(streams: JobStreams, log: SqliteEventLog, store: SqliteJobStore) -> None:
        silent = job("silent", JobStatus.FAILED)  # no event at all
        store.save(silent)
        [only] = await messages(await streams.open(silent, "key:t", 0))
        assert only == {"seq": 1, "ts": silent.created_at.timestamp(), "status": "failed",
                        "exit_code": 2, "reason": "Error", "progress": 1.0}  # fmt: skip
        assert await streams.open(silent, "key:t", 1) is None
        cut = job("cut", JobStatus.FAILED)  # history without its end
        store.save(cut)
        append_history(log, "cut", terminal=False)
        got = await messages(await streams.open(cut, "key:t", 0))
        assert [m["seq"] for m in got] == [1, 2, 3]
        assert (got[-1]["status"], got[-1]["exit_code"]) == ("failed", 2)
        assert [m["seq"] for m in await messages(await streams.open(cut, "key:t", 2))] == [3]
        assert await streams.open(cut, "key:t", 3) is None

    run(tmp_path, scenario)


def test_a_follower_gets_what_comes_then_the_end_when_the_record_ends(tmp_path: Path) -> None:
    async def scenario(streams: JobStreams, log: SqliteEventLog, store: SqliteJobStore) -> None:
        record = job("a")
        store.save(record)
        runner_log = SqliteEventLog(tmp_path / "events.sqlite3")  # another writer
        following = asyncio.create_task(messages(await streams.open(record, "key:t", 0), 10))
        past_the_end = asyncio.create_task(
            messages(await streams.open(record, "key:t", MAX_SEQ + 1), 10)
        )
        await asyncio.sleep(0.3)
        await asyncio.to_thread(append_history, runner_log, "a", False)
        await asyncio.sleep(0.3)
        assert not following.done()
        await asyncio.to_thread(store.save, job("a", JobStatus.FAILED))  # no terminal event
        got = await following
        assert [m["seq"] for m in got] == [1, 2, 3]
        assert got[-1]["status"] == "failed"
        assert await past_the_end == []

    run(tmp_path, scenario)


def test_a_terminal_message_built_before_the_finaliser_stored_its_event_equals_it(
    tmp_path: Path,
) -> None:
    # The finaliser saves the ended record, then appends its terminal event: a follower
    # reading in between builds the message itself. A client reading later gets the
    # stored one: both must be the same message.
    async def scenario(streams: JobStreams, log: SqliteEventLog, store: SqliteJobStore) -> None:
        running = job("a")
        store.save(running)
        append_history(log, "a", terminal=False)
        ended = running.model_copy(update={
            "status": JobStatus.FAILED, "exit_code": 2, "reason": ExitReason.ERROR,
            "finished_at": running.created_at + timedelta(seconds=3),
        })  # fmt: skip
        store.save(ended)
        early = await messages(await streams.open(ended, "key:t", 0))
        log.append("a", **terminal_event(ended))
        late = await messages(await streams.open(ended, "key:t", 0))
        assert early == late
        assert late[-1]["ts"] == ended.finished_at.timestamp()

    run(tmp_path, scenario)


def test_closing_ends_every_stream_and_refuses_new_ones(tmp_path: Path) -> None:
    async def scenario(streams: JobStreams, log: SqliteEventLog, store: SqliteJobStore) -> None:
        record = job("a")
        store.save(record)
        stream = await streams.open(record, "key:t", 0)
        waiting = asyncio.create_task(messages(stream))
        await asyncio.sleep(0.2)
        streams.end_all()
        with pytest.raises(StreamsClosedError):
            await waiting
        with pytest.raises(StreamRefusedError) as refused:
            await streams.open(record, "key:t", 0)
        assert refused.value.limit is None

    run(tmp_path, scenario)


def test_a_stream_holds_its_slot_until_it_is_closed(tmp_path: Path) -> None:
    async def scenario(streams: JobStreams, log: SqliteEventLog, store: SqliteJobStore) -> None:
        record = job("a")
        store.save(record)
        first = await streams.open(record, "key:t", 0)
        assert first is not None
        with pytest.raises(StreamRefusedError):
            await streams.open(record, "key:t", 0)
        await first.aclose()
        second = await streams.open(record, "key:t", 0)
        assert second is not None
        await second.aclose()
        store.save(job("a", JobStatus.FAILED))
        ended = job("a", JobStatus.FAILED)
        for _ in range(3):  # a job seen to its end frees its slot each time
            await messages(await streams.open(ended, "key:t", 0))
            assert await streams.open(ended, "key:t", 1) is None
        assert streams.slots.open == 0

    run(tmp_path, scenario, max_streams=1)


@pytest.mark.parametrize(
    ("header", "after"),
    [
        (None, 0),
        ("", 0),
        ("17", 17),
        (" 17 ", 17),
        ("9223372036854775807", MAX_SEQ),
        ("9" * 5000, MAX_SEQ + 1),  # past everything, without parsing 5000 digits
        ("abc", 0),
        ("-3", 0),
        ("1.5", 0),
        ("١٢", 0),  # digits, but not ASCII ones
    ],
)
def test_last_event_id_resumes_after_a_seq_and_anything_else_is_ignored(
    header: str | None, after: int
) -> None:
    assert resume_point(header) == after
