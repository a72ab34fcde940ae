"""The embedded log's feed: appends by other connections (a runner process) wake the
readers of those jobs, and only those."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from api.streams.sqlite_feed import SqliteEventFeed
from api.streams.watch import JobWatch, Waiter
from runner.events import SqliteEventLog


async def woken(waiter: Waiter, within_s: float) -> bool:
    try:
        await asyncio.wait_for(waiter.wait(), within_s)
    except TimeoutError:
        return False
    return True


def test_a_runners_append_wakes_the_readers_of_its_job(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    api_log, runner_log = SqliteEventLog(path), SqliteEventLog(path)
    api_log.append("earlier", stdout="before the feed started\n")

    async def scenario() -> None:
        watch = JobWatch()
        watch.bind(asyncio.get_running_loop())
        feed = SqliteEventFeed(path, watch, poll_s=0.02, idle_s=0.2)
        feed.start()
        try:
            with watch.following("a", 0) as reader, watch.following("b", 0) as other:
                assert not await woken(reader, 0.3)  # nothing new: nobody wakes
                await asyncio.to_thread(runner_log.append, "a", stdout="line\n")
                assert await woken(reader, 1.0)
                assert not await woken(other, 0.2)
        finally:
            await feed.stop()

    asyncio.run(scenario())


def test_appends_after_the_newest_rows_were_deleted_still_wake_readers(tmp_path: Path) -> None:
    """Retention deletes a forgotten job's rows; SQLite then reuses their rowids."""
    path = tmp_path / "events.sqlite3"
    log = SqliteEventLog(path)
    for i in range(3):
        log.append("forgotten", stdout=f"{i}\n")

    async def scenario() -> None:
        watch = JobWatch()
        watch.bind(asyncio.get_running_loop())
        feed = SqliteEventFeed(path, watch, poll_s=0.02, idle_s=0.2)
        feed.start()
        try:
            with watch.following("a", 0) as reader:
                await asyncio.sleep(0.1)
                with sqlite3.connect(path) as db:
                    db.execute("DELETE FROM events WHERE job_id = 'forgotten'")
                await asyncio.sleep(0.1)
                reader.clear()  # the deletion may have woken it; the append must too
                await asyncio.to_thread(log.append, "a", stdout="line\n")  # rowid 1 again
                assert await woken(reader, 1.0)
        finally:
            await feed.stop()

    asyncio.run(scenario())


def test_a_feed_with_no_job_followed_wakes_when_one_is(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    log = SqliteEventLog(path)

    async def scenario() -> None:
        watch = JobWatch()
        watch.bind(asyncio.get_running_loop())
        feed = SqliteEventFeed(path, watch, poll_s=0.02, idle_s=30)  # would sleep 30 s
        feed.start()
        try:
            await asyncio.sleep(0.1)
            with watch.following("a", 0) as reader:
                await asyncio.to_thread(log.append, "a", stdout="line\n")
                assert await woken(reader, 1.0)
        finally:
            await feed.stop()

    asyncio.run(scenario())
