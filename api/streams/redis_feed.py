"""Redis's feed: one task and one connection per API process block in `XREAD` on the
streams of every job followed, and wake the readers of the jobs that have news.

Each stream is read from the position of its readers (entry ids are `<seq>-0`), never
from `$`: an event appended between a reader's own read and the next `XREAD` would
otherwise go unnoticed. When a job gains its first reader the blocked `XREAD` is
abandoned (redis-py then drops that connection) and issued again with the new set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from api.streams.watch import JobWatch

log = logging.getLogger("zyra.streams")

BLOCK_S = 10.0  # an idle XREAD returns this often (nothing else happens then)
BATCH = 100  # entries per stream and call: only their ids matter here
MAX_BACKOFF_S = 30.0
CANCEL_WAIT_S = 0.5  # how long an abandoned XREAD is given to end


class RedisEventFeed:
    def __init__(self, url: str, stream_key: Callable[[str], str], watch: JobWatch) -> None:
        self.url, self.stream_key, self.watch = url, stream_key, watch
        self._new_job = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        watch.on_new_job(self._new_job.set)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="redis-event-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        client = aioredis.Redis.from_url(
            self.url, socket_timeout=BLOCK_S + 10, socket_connect_timeout=5
        )
        positions: dict[str, int] = {}  # job id -> last seq this feed has reported
        backoff = 1.0
        try:
            while True:
                self._new_job.clear()  # before looking: a job followed from now on wakes us
                followed = self.watch.followed
                for job_id in positions.keys() - followed:
                    del positions[job_id]
                for job_id in followed - positions.keys():
                    positions[job_id] = self.watch.position(job_id)
                if not positions:
                    await self._new_job.wait()
                    continue
                jobs = {self.stream_key(job_id): job_id for job_id in positions}
                try:
                    reply = await self._read_until_new_job(
                        client, {key: f"{positions[job]}-0" for key, job in jobs.items()}
                    )
                except (RedisError, OSError) as exc:
                    log.warning("event feed: Redis unreachable (%s); retrying in %.0f s",
                                exc, backoff)  # fmt: skip
                    self.watch.notify_all()  # readers find out, and tell their clients
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    continue
                backoff = 1.0
                news = []
                for key, entries in reply or []:
                    job_id = jobs.get(key.decode() if isinstance(key, bytes) else key)
                    if job_id is not None and entries:
                        positions[job_id] = int(entries[-1][0].split(b"-")[0])
                        news.append(job_id)
                self.watch.notify(news)
        finally:
            await client.aclose()

    async def _read_until_new_job(
        self, client: aioredis.Redis, streams: dict[str, str]
    ) -> list | None:
        """XREAD's reply, or None when a job gained its first reader first."""
        read = asyncio.ensure_future(
            client.xread(streams, count=BATCH, block=int(BLOCK_S * 1000))  # type: ignore[arg-type]
        )
        new_job = asyncio.ensure_future(self._new_job.wait())
        try:
            await asyncio.wait({read, new_job}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            new_job.cancel()
            if not read.done():
                read.cancel()  # redis-py then drops its connection
                read.add_done_callback(_consume)
                # Seen from a feed being stopped, the cancel may take effect only when the
                # block ends: a shutdown must not wait for that.
                await asyncio.wait({read}, timeout=CANCEL_WAIT_S)
        return read.result() if read.done() and not read.cancelled() else None


def _consume(done: asyncio.Future) -> None:
    """Retrieve an abandoned XREAD's outcome, so that none is reported as unread."""
    if not done.cancelled():
        done.exception()
