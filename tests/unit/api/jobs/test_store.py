"""The job stores (embedded and Redis): listing by owner with cursors, and files and
keys written by earlier layouts."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from api.jobs.records import JobRecord, RunMode
from api.jobs.redis_store import RedisJobStore
from api.jobs.store import JobFilter, JobStore, SqliteJobStore
from runner.lifecycle import JobStatus
from tests.services import RedisServer

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def record(
    job_id: str,
    status: JobStatus = JobStatus.SUCCEEDED,
    owner: str = "",
    at: datetime | None = None,
    submitted_by: str = "t",
) -> JobRecord:
    return JobRecord(job_id=job_id, status=status, mode=RunMode.SYNC, stage="visualize",
                     command="heatmap", args={}, submitted_by=submitted_by, owner=owner,
                     created_at=at or datetime.now(UTC))  # fmt: skip


def all_pages(store: JobStore, flt: JobFilter, limit: int) -> list[str]:
    seen, cursor = [], None
    while True:
        page = store.list(flt, limit, cursor)
        assert len(page.jobs) <= limit
        seen += [r.job_id for r in page.jobs]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def test_listing_by_owner_pages_through_that_owners_jobs_only(store: JobStore) -> None:
    saved = []
    for i in range(30):
        owner = "key:alice" if i % 3 else "key:bob"
        # pairs share a timestamp: the cursor must tell them apart by id
        status = JobStatus.FAILED if i % 2 else JobStatus.SUCCEEDED
        saved.append(record(f"{i:032x}", status, owner, T0 + timedelta(seconds=i // 2)))
    for r in saved:
        store.save(r)
    newest_first = sorted(saved, key=lambda r: (-r.created_at.timestamp(), r.job_id))
    alice = [r.job_id for r in newest_first if r.owner == "key:alice"]
    for limit in (1, 3, 7, 50):
        assert all_pages(store, JobFilter(owner="key:alice"), limit) == alice
    failed_bob = [r.job_id for r in newest_first if r.owner == "key:bob" and r.status == "failed"]
    assert all_pages(store, JobFilter(JobStatus.FAILED, owner="key:bob"), 2) == failed_bob
    assert all_pages(store, JobFilter(owner="key:nobody"), 5) == []
    assert len(all_pages(store, JobFilter(), 4)) == 30


def test_a_record_without_owner_belongs_to_the_key_that_submitted_it(store: JobStore) -> None:
    store.save(record("c" * 32, submitted_by="carol"))
    assert store.get("c" * 32).owner == "key:carol"
    assert all_pages(store, JobFilter(owner="key:carol"), 10) == ["c" * 32]


def test_save_unless_terminal_never_steps_back(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    assert store.save_unless_terminal(record("b" * 32, JobStatus.RUNNING))
    assert store.save_unless_terminal(record("b" * 32, JobStatus.FAILED))
    assert not store.save_unless_terminal(record("b" * 32, JobStatus.SUCCEEDED))
    assert store.get("b" * 32).status is JobStatus.FAILED
    assert [r.job_id for r in store.active()] == []


# --- earlier layouts ---------------------------------------------------------------------


def legacy_json(r: JobRecord) -> str:
    """A record as written before owners: no `owner` field."""
    data = json.loads(r.model_dump_json())
    del data["owner"]
    return json.dumps(data)


def test_a_file_of_the_first_layout_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    old = record("a" * 32, submitted_by="alice")
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (job_id TEXT PRIMARY KEY, status TEXT NOT NULL,"
                   " created_at TEXT NOT NULL, record TEXT NOT NULL)")  # fmt: skip
        db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?)",
                   (old.job_id, old.status.value, old.created_at.isoformat(),
                    legacy_json(old)))  # fmt: skip
    store = SqliteJobStore(path)
    assert store.get(old.job_id) == old
    page = store.list(JobFilter(stage="visualize"), limit=10, cursor=None)
    assert [r.job_id for r in page.jobs] == [old.job_id]
    assert all_pages(store, JobFilter(owner="key:alice"), 10) == [old.job_id]


def test_a_file_of_the_layout_without_owners_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    old = [record(f"{i:032x}", submitted_by=name, at=T0 + timedelta(seconds=i))
           for i, name in enumerate(["alice", "bob", "alice"])]  # fmt: skip
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (job_id TEXT PRIMARY KEY, status TEXT NOT NULL,"
                   " stage TEXT NOT NULL, command TEXT NOT NULL, created REAL NOT NULL,"
                   " record TEXT NOT NULL)")  # fmt: skip
        db.execute("CREATE INDEX jobs_by_time ON jobs (created DESC, job_id)")
        db.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?)",
                       [(r.job_id, r.status.value, r.stage, r.command,
                         r.created_at.timestamp(), legacy_json(r)) for r in old])  # fmt: skip
    store = SqliteJobStore(path)
    assert all_pages(store, JobFilter(owner="key:alice"), 1) == [old[2].job_id, old[0].job_id]
    assert all_pages(store, JobFilter(owner="key:bob"), 1) == [old[1].job_id]
    new = record("f" * 32, owner="oauth2:dave", at=T0 + timedelta(days=1))
    store.save(new)
    assert all_pages(store, JobFilter(owner="oauth2:dave"), 5) == [new.job_id]
    with sqlite3.connect(path) as db:
        plan = " ".join(str(row) for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT record FROM jobs WHERE owner = ?"
            " ORDER BY created DESC, job_id LIMIT 5", ("key:alice",)))  # fmt: skip
    assert "jobs_by_owner" in plan
    assert SqliteJobStore(path).get(old[0].job_id) == old[0]  # a second open changes nothing


def test_redis_records_from_before_owner_indexes_are_indexed_on_first_listing(
    redis_server: RedisServer,
) -> None:
    prefix = f"t{uuid.uuid4().hex}"
    raw = redis.Redis.from_url(redis_server.url)
    old = [record(f"{i:032x}", submitted_by=name, at=T0 + timedelta(seconds=i))
           for i, name in enumerate(["alice", "bob", "alice"])]  # fmt: skip
    for r in old:  # as the previous version wrote them: the time index only
        raw.set(f"{prefix}:job:{r.job_id}:record", legacy_json(r))
        raw.zadd(f"{prefix}:jobs", {r.job_id: r.created_at.timestamp()})
    store = RedisJobStore(redis_server.url, prefix=prefix)
    assert all_pages(store, JobFilter(owner="key:alice"), 1) == [old[2].job_id, old[0].job_id]
    assert raw.exists(f"{prefix}:jobs:owner-indexed")  # other processes skip the walk
    assert all_pages(store, JobFilter(owner="key:bob"), 5) == [old[1].job_id]
