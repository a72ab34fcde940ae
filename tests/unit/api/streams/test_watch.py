"""The process's one waiter: readers wait on it, whatever has news wakes them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from api.streams.watch import JobWatch, NotifyingEventLog, Waiter
from runner.events import SqliteEventLog


def run(scenario: Callable[[JobWatch], Awaitable[None]]) -> None:
    async def bound() -> None:
        watch = JobWatch()
        watch.bind(asyncio.get_running_loop())
        await scenario(watch)

    asyncio.run(bound())


async def woken(waiter: Waiter, within_s: float = 1.0) -> bool:
    try:
        await asyncio.wait_for(waiter.wait(), within_s)
    except TimeoutError:
        return False
    return True


def test_news_of_a_job_wakes_its_readers_and_no_others() -> None:
    async def scenario(watch: JobWatch) -> None:
        with (
            watch.following("a", 0) as first,
            watch.following("a", 0) as second,
            watch.following("b", 0) as other,
        ):
            watch.notify(["a"])
            assert await woken(first) and await woken(second)
            assert not await woken(other, 0.1)

    run(scenario)


def test_news_from_another_thread_wakes_readers() -> None:
    async def scenario(watch: JobWatch) -> None:
        with watch.following("a", 0) as reader:
            threading.Thread(target=watch.notify_threadsafe, args=(["a"],)).start()
            assert await woken(reader)
            reader.clear()
            threading.Thread(target=watch.notify_threadsafe).start()  # every job
            assert await woken(reader)

    run(scenario)


def test_a_cleared_reader_waits_for_the_next_news() -> None:
    async def scenario(watch: JobWatch) -> None:
        with watch.following("a", 0) as reader:
            watch.notify(["a"])
            reader.clear()  # as a reader does before each read
            assert not await woken(reader, 0.1)

    run(scenario)


def test_followed_jobs_and_positions_follow_the_readers() -> None:
    async def scenario(watch: JobWatch) -> None:
        first_readers: list[frozenset[str]] = []
        watch.on_new_job(lambda: first_readers.append(watch.followed))
        with watch.following("a", 7) as late:
            with watch.following("a", 3), watch.following("b", 0):
                assert watch.followed == {"a", "b"}
                assert watch.position("a") == 3
            assert watch.followed == {"a"}
            late.after = 9
            assert watch.position("a") == 9
        assert watch.followed == frozenset()
        assert first_readers == [{"a"}, {"a", "b"}]  # once per job gaining its first reader

    run(scenario)


def test_closing_wakes_every_reader_and_each_later_one_at_once() -> None:
    async def scenario(watch: JobWatch) -> None:
        with watch.following("a", 0) as reader:
            watch.close()
            assert watch.closed and await woken(reader)
        with watch.following("b", 0) as later:
            assert await woken(later, 0.1)

    run(scenario)


def test_the_apis_own_appends_wake_readers_at_once(tmp_path: Path) -> None:
    async def scenario(watch: JobWatch) -> None:
        log = NotifyingEventLog(SqliteEventLog(tmp_path / "events.sqlite3"), watch)
        with watch.following("a", 0) as reader:
            await asyncio.to_thread(log.append, "a", stdout="hello\n")
            assert await woken(reader, 0.5)  # no feed runs here: the append itself woke it
        assert [e.stdout for e in log.read("a")] == ["hello\n"]  # the rest is the log's own

    run(scenario)


def test_appends_of_a_job_nobody_follows_wake_nothing(tmp_path: Path) -> None:
    """A sync run's events mostly have no reader: they do not each wake the loop."""

    async def scenario(watch: JobWatch) -> None:
        log = NotifyingEventLog(SqliteEventLog(tmp_path / "events.sqlite3"), watch)
        with watch.following("a", 0) as reader:
            ticks = watch.tick
            await asyncio.to_thread(log.append, "b", stdout="nobody reads this\n")
            assert not await woken(reader, 0.1)
            assert watch.tick == ticks  # no notification ran on the loop
            await asyncio.to_thread(log.append, "a", stdout="read\n")
            assert await woken(reader, 0.5)
            assert watch.tick == ticks + 1

    run(scenario)


def test_notifying_a_loop_that_has_closed_does_nothing() -> None:
    watch = JobWatch()
    loop = asyncio.new_event_loop()
    watch.bind(loop)
    loop.close()
    watch.notify_threadsafe(["a"])  # no error: nobody waits any more


@pytest.mark.parametrize("after", [0, 5])
def test_a_waiter_remembers_where_its_reader_is(after: int) -> None:
    async def scenario(watch: JobWatch) -> None:
        with watch.following("a", after) as reader:
            assert reader.after == after

    run(scenario)
