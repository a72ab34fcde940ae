"""The embedded job store, including a file written by the first layout."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from api.jobs.records import JobRecord, JobStatus, RunMode
from api.jobs.store import JobFilter, SqliteJobStore


def record(job_id: str, status: JobStatus = JobStatus.SUCCEEDED) -> JobRecord:
    return JobRecord(job_id=job_id, status=status, mode=RunMode.SYNC, stage="visualize",
                     command="heatmap", args={}, submitted_by="t")  # fmt: skip


def test_a_file_of_the_first_layout_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    old = record("a" * 32)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (job_id TEXT PRIMARY KEY, status TEXT NOT NULL,"
                   " created_at TEXT NOT NULL, record TEXT NOT NULL)")  # fmt: skip
        db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?)",
                   (old.job_id, old.status.value, old.created_at.isoformat(),
                    old.model_dump_json()))  # fmt: skip
    store = SqliteJobStore(path)
    assert store.get(old.job_id) == old
    page = store.list(JobFilter(stage="visualize"), limit=10, cursor=None)
    assert [r.job_id for r in page.jobs] == [old.job_id]


def test_save_unless_terminal_never_steps_back(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    assert store.save_unless_terminal(record("b" * 32, JobStatus.RUNNING))
    assert store.save_unless_terminal(record("b" * 32, JobStatus.FAILED))
    assert not store.save_unless_terminal(record("b" * 32, JobStatus.SUCCEEDED))
    assert store.get("b" * 32).status is JobStatus.FAILED
    assert [r.job_id for r in store.active()] == []
