"""Both event logs forget an expired job: its events, its sequence and its result; the
SQLite file gives the space back."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import redis

from runner.events import EventLog, RedisEventLog, RunnerResult, SqliteEventLog
from tests.services import RedisServer

RESULT = RunnerResult(exit_code=0, reason="Completed", duration_s=1.0, outputs=[])


def test_a_forgotten_job_has_no_events_nor_result_and_others_keep_theirs(log: EventLog) -> None:
    for job_id in ("gone", "also-gone", "kept"):
        log.append(job_id, stdout="line\n")
        log.set_result(job_id, RESULT)
    log.forget(["gone", "also-gone", "never-seen"])
    assert log.read("gone") == [] and log.get_result("gone") is None
    assert log.read("also-gone") == []
    assert [e.stdout for e in log.read("kept")] == ["line\n"]
    assert log.get_result("kept") == RESULT
    assert log.append("gone", status="queued").seq == 1  # a new job of that id starts over


def test_redis_keeps_no_key_of_a_forgotten_job(redis_server: RedisServer) -> None:
    log = RedisEventLog(redis_server.url[:-1] + "3", prefix=f"t{time.time_ns()}")
    log.append("j", stdout="a\n")
    log.set_result("j", RESULT)
    log.forget(["j"])
    raw = redis.Redis.from_url(redis_server.url[:-1] + "3")
    assert [k for k in log.keys("j") if raw.exists(k)] == []


def file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def fill(log: SqliteEventLog, job_id: str, megabytes: int) -> None:
    for _ in range(megabytes * 16):
        log.append(job_id, stdout="x" * 65_536)


def test_sqlite_file_shrinks_when_a_noisy_job_is_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    log = SqliteEventLog(path)
    fill(log, "noisy", 8)
    log.append("quiet", stdout="kept\n")
    full = file_size(path)
    assert full > 8 << 20
    log.forget(["noisy"])
    assert file_size(path) < 1 << 20, (full, file_size(path))
    assert [e.stdout for e in log.read("quiet")] == ["kept\n"]


def test_an_older_file_without_auto_vacuum_shrinks_once_much_is_freed(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    with sqlite3.connect(path) as db:  # as earlier versions made it
        db.execute("CREATE TABLE events (job_id TEXT NOT NULL, seq INTEGER NOT NULL,"
                   " data TEXT NOT NULL, PRIMARY KEY (job_id, seq))")  # fmt: skip
        db.execute("CREATE TABLE results (job_id TEXT PRIMARY KEY, data TEXT NOT NULL)")
    log = SqliteEventLog(path)
    fill(log, "noisy", 8)
    log.forget(["noisy"])
    assert file_size(path) < 1 << 20
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental from now on
