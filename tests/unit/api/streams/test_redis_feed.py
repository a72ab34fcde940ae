"""Redis's feed: one blocking XREAD over every stream followed, issued again when a job
gains its first reader; readers find out when Redis is down."""

from __future__ import annotations

import asyncio
import time

from api.streams.redis_feed import RedisEventFeed
from api.streams.watch import JobWatch, Waiter
from runner.events import RedisEventLog
from tests.services import RedisServer


async def woken(waiter: Waiter, within_s: float) -> bool:
    try:
        await asyncio.wait_for(waiter.wait(), within_s)
    except TimeoutError:
        return False
    return True


def feed_for(url: str, log: RedisEventLog, watch: JobWatch) -> RedisEventFeed:
    return RedisEventFeed(url, lambda job_id: log.keys(job_id)[0], watch)


def test_an_append_wakes_the_readers_of_its_job(redis_server: RedisServer) -> None:
    url = redis_server.url[:-1] + "3"
    log = RedisEventLog(url, prefix=f"t{time.time_ns()}")

    async def scenario() -> None:
        watch = JobWatch()
        watch.bind(asyncio.get_running_loop())
        feed = feed_for(url, log, watch)
        feed.start()
        try:
            with watch.following("a", 0) as reader, watch.following("b", 0) as other:
                assert not await woken(reader, 0.3)
                await asyncio.to_thread(log.append, "a", stdout="line\n")
                assert await woken(reader, 1.0)
                assert not await woken(other, 0.2)
                reader.clear()
                await asyncio.to_thread(log.append, "a", stdout="again\n")
                assert await woken(reader, 1.0)  # from where it had got to, not from 0
        finally:
            await feed.stop()

    asyncio.run(scenario())


def test_a_job_followed_while_the_feed_blocks_is_read_at_once(redis_server: RedisServer) -> None:
    url = redis_server.url[:-1] + "3"
    log = RedisEventLog(url, prefix=f"t{time.time_ns()}")

    async def scenario() -> None:
        watch = JobWatch()
        watch.bind(asyncio.get_running_loop())
        feed = feed_for(url, log, watch)
        feed.start()
        try:
            with watch.following("a", 0):
                await asyncio.sleep(0.3)  # XREAD blocks on "a" alone, for 10 s
                with watch.following("b", 0) as reader:
                    await asyncio.sleep(0.1)
                    started = time.monotonic()
                    await asyncio.to_thread(log.append, "b", stdout="line\n")
                    assert await woken(reader, 2.0)
                    assert time.monotonic() - started < 1
        finally:
            await feed.stop()

    asyncio.run(scenario())


def test_a_reader_past_the_events_there_is_woken_by_the_next(redis_server: RedisServer) -> None:
    """The feed reads each stream from its readers' position: earlier events do not
    count as news, later ones do."""
    url = redis_server.url[:-1] + "3"
    log = RedisEventLog(url, prefix=f"t{time.time_ns()}")
    for i in range(3):
        log.append("a", stdout=f"{i}\n")

    async def scenario() -> None:
        watch = JobWatch()
        watch.bind(asyncio.get_running_loop())
        feed = feed_for(url, log, watch)
        feed.start()
        try:
            with watch.following("a", 3) as reader:
                assert not await woken(reader, 0.3)
                await asyncio.to_thread(log.append, "a", stdout="3\n")
                assert await woken(reader, 1.0)
        finally:
            await feed.stop()

    asyncio.run(scenario())


def test_readers_wake_when_redis_goes_away(own_redis: RedisServer) -> None:
    log = RedisEventLog(own_redis.url, prefix="t")

    async def scenario() -> None:
        watch = JobWatch()
        watch.bind(asyncio.get_running_loop())
        feed = feed_for(own_redis.url, log, watch)
        feed.start()
        try:
            with watch.following("a", 0) as reader:
                await asyncio.sleep(0.3)
                await asyncio.to_thread(own_redis.stop)
                assert await woken(reader, 5.0)  # to read, fail, and tell its client
        finally:
            await feed.stop()

    asyncio.run(scenario())


def test_stopping_the_feed_while_it_blocks_is_prompt(redis_server: RedisServer) -> None:
    """A shutdown does not wait out the XREAD block (10 s) the feed has just issued."""
    url = redis_server.url[:-1] + "3"
    log = RedisEventLog(url, prefix=f"t{time.time_ns()}")

    async def scenario() -> float:
        watch = JobWatch()
        watch.bind(asyncio.get_running_loop())
        feed = feed_for(url, log, watch)
        feed.start()
        with watch.following("a", 0) as reader:
            await asyncio.to_thread(log.append, "a", stdout="line\n")
            assert await woken(reader, 2.0)  # the feed has gone round: blocked again
        started = time.monotonic()
        await feed.stop()
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 2
