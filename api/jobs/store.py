"""Where job records live. The embedded store is one SQLite file under the data dir."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from api.jobs.records import JobRecord


class JobStore(Protocol):
    def save(self, record: JobRecord) -> None: ...
    def get(self, job_id: str) -> JobRecord | None: ...


class SqliteJobStore:
    """Durable across restarts and shared by every worker process on one machine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS jobs ("
                " job_id TEXT PRIMARY KEY, status TEXT NOT NULL, created_at TEXT NOT NULL,"
                " record TEXT NOT NULL)"
            )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def save(self, record: JobRecord) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO jobs (job_id, status, created_at, record) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(job_id) DO UPDATE SET status=excluded.status, record=excluded.record",
                (
                    record.job_id,
                    record.status.value,
                    record.created_at.isoformat(),
                    record.model_dump_json(),
                ),
            )

    def get(self, job_id: str) -> JobRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT record FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return JobRecord.model_validate_json(row[0]) if row else None
