"""Both job stores forget expired jobs: which ones (terminal, by `finished_at`), every
trace of them (records, indexes), and the SQLite file gives the space back."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from api.jobs.records import JobRecord, JobStatus, RunMode
from api.jobs.redis_store import RedisJobStore
from api.jobs.store import JobFilter, JobStore, SqliteJobStore
from tests.services import RedisServer

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def record(
    job_id: str,
    status: JobStatus = JobStatus.SUCCEEDED,
    finished: datetime | None = T0,
    owner: str = "key:alice",
    stdout: str = "",
) -> JobRecord:
    return JobRecord(job_id=job_id, status=status, mode=RunMode.ASYNC, stage="process",
                     command="api-json", args={}, submitted_by="alice", owner=owner,
                     created_at=T0 - timedelta(hours=1), stdout=stdout,
                     finished_at=finished if status.is_terminal() else None)  # fmt: skip


def ids(n: int, tag: str) -> list[str]:
    return [f"{tag}{i:031x}" for i in range(n)]


def test_only_terminal_jobs_finished_before_the_cutoff_are_expired(store: JobStore) -> None:
    old, recent = "a" * 32, "b" * 32
    store.save(record(old, JobStatus.FAILED, finished=T0))
    store.save(record(recent, finished=T0 + timedelta(hours=2)))
    for status in (JobStatus.QUEUED, JobStatus.RUNNING):  # never, however old
        store.save(record(status.value[0] * 32, status))
    assert store.finished_before(T0 + timedelta(hours=1), limit=10) == [old]
    assert store.finished_before(T0 + timedelta(days=9), limit=10) == [old, recent]
    assert store.finished_before(T0 + timedelta(days=9), limit=1) == [old]
    assert store.finished_before(T0, limit=10) == []


def test_a_forgotten_job_is_gone_from_every_listing(store: JobStore) -> None:
    gone, kept = "c" * 32, "d" * 32
    store.save(record(gone, JobStatus.RUNNING))
    store.save(record(gone, JobStatus.CANCELLED))
    store.save(record(kept, JobStatus.RUNNING))
    store.forget([gone, "e" * 32])  # an id already gone is no error
    assert store.get(gone) is None
    assert [r.job_id for r in store.list(JobFilter(), 10, None).jobs] == [kept]
    assert [r.job_id for r in store.list(JobFilter(owner="key:alice"), 10, None).jobs] == [kept]
    assert [r.job_id for r in store.active()] == [kept]
    assert store.finished_before(T0 + timedelta(days=9), limit=10) == []


def test_outputs_are_marked_expired_once_and_the_record_kept(store: JobStore) -> None:
    job_id = "f" * 32
    store.save(record(job_id, stdout="kept\n"))
    at = T0 + timedelta(days=1)
    assert store.mark_outputs_expired(job_id, at)
    assert not store.mark_outputs_expired(job_id, at + timedelta(hours=1))  # first time stays
    marked = store.get(job_id)
    assert marked is not None
    assert marked.outputs_expired_at == at and marked.stdout == "kept\n"
    assert not store.mark_outputs_expired("0" * 32, at)  # no record: nothing to say


def test_redis_keeps_no_key_or_index_entry_of_a_forgotten_job(redis_server: RedisServer) -> None:
    prefix = f"t{uuid.uuid4().hex}"
    store = RedisJobStore(redis_server.url, prefix=prefix)
    raw = redis.Redis.from_url(redis_server.url)
    gone, kept = ids(3, "a"), ids(1, "b")
    for job_id in gone + kept:
        store.save(record(job_id, owner=f"key:{job_id[-1]}"))
    store.list(JobFilter(owner="key:0"), 10, None)  # the owner-indexed marker exists too
    store.forget(gone)
    leftovers = [k.decode() for k in raw.scan_iter(f"{prefix}:*")]
    assert not [k for k in leftovers if any(j in k for j in gone)], leftovers
    for key in leftovers:
        kind = raw.type(key).decode()
        members = (raw.zrange(key, 0, -1) if kind == "zset"
                   else raw.smembers(key) if kind == "set" else [])  # fmt: skip
        assert not {m.decode() for m in members} & set(gone), (key, members)
    assert store.get(kept[0]) is not None


def test_redis_terminal_records_from_before_the_finished_index_expire(
    redis_server: RedisServer,
) -> None:
    prefix = f"t{uuid.uuid4().hex}"
    raw = redis.Redis.from_url(redis_server.url)
    old = record("9" * 32)
    # As the previous version wrote it: record, time index, owner index.
    raw.set(f"{prefix}:job:{old.job_id}:record", old.model_dump_json())
    raw.zadd(f"{prefix}:jobs", {old.job_id: old.created_at.timestamp()})
    store = RedisJobStore(redis_server.url, prefix=prefix)
    assert store.finished_before(T0 + timedelta(days=1), limit=10) == [old.job_id]


def file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def test_sqlite_file_shrinks_when_jobs_are_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = SqliteJobStore(path)
    noisy = ids(400, "a")
    for job_id in noisy:
        store.save(record(job_id, stdout="x" * 20_000))
    store.save(record("b" * 32, JobStatus.RUNNING))
    full = file_size(path)
    store.forget(noisy)
    assert file_size(path) < full / 10, (full, file_size(path))
    assert [r.job_id for r in store.active()] == ["b" * 32]


def test_a_file_of_the_layout_without_finished_times_is_upgraded_and_shrinks(
    tmp_path: Path,
) -> None:
    """Files made before expiry: no `finished` column, no auto_vacuum. Their terminal
    jobs expire, and once much is freed the file is vacuumed (and made incremental)."""
    path = tmp_path / "jobs.sqlite3"
    old = [record(job_id, stdout="x" * 20_000) for job_id in ids(300, "c")]
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (job_id TEXT PRIMARY KEY, status TEXT NOT NULL,"
                   " stage TEXT NOT NULL, command TEXT NOT NULL, created REAL NOT NULL,"
                   " record TEXT NOT NULL, owner TEXT NOT NULL DEFAULT '')")  # fmt: skip
        db.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [(r.job_id, r.status.value, r.stage, r.command,
                         r.created_at.timestamp(), r.model_dump_json(), r.owner)
                        for r in old])  # fmt: skip
    full = file_size(path)
    store = SqliteJobStore(path)
    expired = store.finished_before(T0 + timedelta(seconds=1), limit=1000)
    assert sorted(expired) == sorted(r.job_id for r in old)
    store.forget(expired)
    assert file_size(path) < full / 10, (full, file_size(path))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental from now on


def test_jobs_ended_since_a_time_are_found_and_running_ones_are_not(store: JobStore) -> None:
    early, late, running = ids(3, "e")
    store.save(record(early, finished=T0 - timedelta(minutes=10)))
    store.save(record(late, JobStatus.FAILED, finished=T0 + timedelta(minutes=1)))
    store.save(record(running, JobStatus.RUNNING))
    assert store.finished_since(T0) == [late]
    assert sorted(store.finished_since(T0 - timedelta(hours=1))) == sorted([early, late])


def test_an_update_replaces_the_record_unless_the_change_declines(store: JobStore) -> None:
    [job_id] = ids(1, "u")
    store.save(record(job_id, JobStatus.RUNNING))
    ended = store.update(job_id, lambda r: r.model_copy(
        update={"status": JobStatus.SUCCEEDED, "finished_at": T0, "stdout": "done"}))  # fmt: skip
    assert ended is not None and store.get(job_id) == ended
    assert store.finished_since(T0) == [job_id]  # its indexes follow the new record
    assert store.update(job_id, lambda r: None) is None
    assert store.get(job_id) == ended
    assert store.update("0" * 32, lambda r: r) is None  # no record: nothing made
    assert store.get("0" * 32) is None
