"""Job records in Redis: one JSON value per job, a time index (all jobs, and one per
owner), a set of active jobs, and an index of finished jobs by when they finished (what
retention reads).

The per-owner indexes (`<prefix>:jobs:owner:<principal id>`, same scores as the time
index) and the finished index (`<prefix>:jobs:finished`) are written with each record.
Records saved before they existed are indexed once, lazily, by the first listing by
owner (or retention sweep) of any process: it walks the time index and then sets
`<prefix>:jobs:owner-indexed` (`<prefix>:jobs:finished-indexed`), which later
processes find.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import redis

from api.jobs.records import JobRecord
from api.jobs.store import (
    Change,
    JobFilter,
    JobPage,
    cursor_of,
    expire_outputs,
    finished_time,
    parse_cursor,
)
from runner.dependencies import redis_reachable


class RedisJobStore:
    def __init__(self, url: str, prefix: str = "zyra") -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self.prefix = prefix
        self._index = f"{prefix}:jobs"
        self._active = f"{prefix}:jobs:active"
        self._owners_indexed = f"{prefix}:jobs:owner-indexed"
        self._owner_index_ready = False
        self._finished = f"{prefix}:jobs:finished"
        self._finished_indexed = f"{prefix}:jobs:finished-indexed"
        self._finished_index_ready = False

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:record"

    def _owner_index(self, owner: str) -> str:
        return f"{self._index}:owner:{owner}"

    def ping(self) -> None:
        with redis_reachable():
            self._redis.ping()

    def _write(self, pipe: redis.client.Pipeline, record: JobRecord) -> None:
        pipe.set(self._key(record.job_id), record.model_dump_json())
        score = {record.job_id: record.created_at.timestamp()}
        pipe.zadd(self._index, score)
        pipe.zadd(self._owner_index(record.owner), score)
        finished = finished_time(record)
        if finished is not None:
            pipe.srem(self._active, record.job_id)
            pipe.zadd(self._finished, {record.job_id: finished})
        else:
            pipe.sadd(self._active, record.job_id)

    def save(self, record: JobRecord) -> None:
        with redis_reachable(), self._redis.pipeline() as pipe:
            self._write(pipe, record)
            pipe.execute()

    def save_unless_terminal(self, record: JobRecord) -> bool:
        key = self._key(record.job_id)
        with redis_reachable(), self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw and JobRecord.model_validate_json(raw).status.is_terminal():
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    self._write(pipe, record)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def get(self, job_id: str) -> JobRecord | None:
        with redis_reachable():
            raw = self._redis.get(self._key(job_id))
        return JobRecord.model_validate_json(raw) if raw else None

    def _records(self, ids: list[bytes]) -> list[JobRecord]:
        if not ids:
            return []
        with redis_reachable():
            raws = self._redis.mget([self._key(i.decode()) for i in ids])
        return [JobRecord.model_validate_json(r) for r in raws if r]

    def _index_legacy(
        self, marker: str, index: Callable[[redis.client.Pipeline, JobRecord], None]
    ) -> None:
        """Add records saved before an index existed to it: one walk of the time index,
        then `marker` (idempotent, so two processes doing it at once do no harm)."""
        with redis_reachable():
            if not self._redis.exists(marker):
                offset, batch = 0, 500
                while ids := self._redis.zrange(self._index, offset, offset + batch - 1):
                    offset += len(ids)
                    with self._redis.pipeline(transaction=False) as pipe:
                        for record in self._records(ids):
                            index(pipe, record)
                        pipe.execute()
                self._redis.set(marker, 1)

    def _index_legacy_owners(self) -> None:
        if not self._owner_index_ready:
            self._index_legacy(
                self._owners_indexed,
                lambda pipe, r: pipe.zadd(
                    self._owner_index(r.owner), {r.job_id: r.created_at.timestamp()}
                ),
            )
            self._owner_index_ready = True

    def _index_legacy_finished(self) -> None:
        def index(pipe: redis.client.Pipeline, record: JobRecord) -> None:
            finished = finished_time(record)
            if finished is not None:
                pipe.zadd(self._finished, {record.job_id: finished})

        if not self._finished_index_ready:
            self._index_legacy(self._finished_indexed, index)
            self._finished_index_ready = True

    def list(self, flt: JobFilter, limit: int, cursor: str | None) -> JobPage:
        after = _order_key(*parse_cursor(cursor)) if cursor else None
        top = f"{-after[0]:.6f}" if after else "+inf"
        index = self._index
        if flt.owner is not None:
            self._index_legacy_owners()
            index = self._owner_index(flt.owner)
        found: list[JobRecord] = []
        offset, batch = 0, max(limit * 4, 100)
        while len(found) <= limit:
            with redis_reachable():
                ids = self._redis.zrevrangebyscore(index, top, "-inf", start=offset, num=batch)
            if not ids:
                break
            offset += len(ids)
            records = sorted(self._records(ids), key=lambda r: _order_key(*_position(r)))
            found += [
                r
                for r in records
                if (after is None or _order_key(*_position(r)) > after) and flt.matches(r)
            ]
        found.sort(key=lambda r: _order_key(*_position(r)))
        more = len(found) > limit
        found = found[:limit]
        return JobPage(found, cursor_of(found[-1]) if more and found else None)

    def active(self) -> list[JobRecord]:
        with redis_reachable():
            ids = list(self._redis.smembers(self._active))
        return [r for r in self._records(ids) if not r.status.is_terminal()]

    def finished_before(self, cutoff: datetime, limit: int) -> list[str]:
        self._index_legacy_finished()
        with redis_reachable():
            ids = self._redis.zrangebyscore(
                self._finished, "-inf", f"({cutoff.timestamp()}", start=0, num=limit
            )
        return [i.decode() for i in ids]

    def forget(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        owners = {r.job_id: r.owner for r in self._records([j.encode() for j in job_ids])}
        with redis_reachable(), self._redis.pipeline() as pipe:
            pipe.delete(*[self._key(job_id) for job_id in job_ids])
            for index in (self._index, self._finished):
                pipe.zrem(index, *job_ids)
            pipe.srem(self._active, *job_ids)
            for job_id, owner in owners.items():
                pipe.zrem(self._owner_index(owner), job_id)
            pipe.execute()

    def update(self, job_id: str, change: Change) -> JobRecord | None:
        key = self._key(job_id)
        with redis_reachable(), self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # never bring back a record deleted meanwhile
                    raw = pipe.get(key)
                    changed = change(JobRecord.model_validate_json(raw)) if raw else None
                    if changed is None:
                        pipe.unwatch()
                        return None
                    pipe.multi()
                    self._write(pipe, changed)
                    pipe.execute()
                    return changed
                except redis.WatchError:
                    continue

    def finished_since(self, cutoff: datetime) -> list[str]:
        with redis_reachable():
            ids = self._redis.zrangebyscore(self._finished, cutoff.timestamp(), "+inf")
        return [i.decode() for i in ids]

    def mark_outputs_expired(self, job_id: str, at: datetime) -> bool:
        return self.update(job_id, expire_outputs(at)) is not None


def _position(record: JobRecord) -> tuple[float, str]:
    return record.created_at.timestamp(), record.job_id


def _order_key(ts: float, job_id: str) -> tuple[float, str]:
    """Newest first, then by id: the order of `GET /jobs` pages."""
    return -round(ts, 6), job_id
