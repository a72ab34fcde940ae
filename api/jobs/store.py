"""Where job records live: `SqliteJobStore` (embedded) or `RedisJobStore`."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from api.jobs.records import JobRecord
from runner.lifecycle import JobStatus
from runner.sqlite_file import SqliteFile

JOBS_TABLE = (
    "CREATE TABLE IF NOT EXISTS jobs ("
    " job_id TEXT PRIMARY KEY, status TEXT NOT NULL, stage TEXT NOT NULL,"
    " command TEXT NOT NULL, created REAL NOT NULL, record TEXT NOT NULL,"
    " owner TEXT NOT NULL DEFAULT '', finished REAL)"
)
JOBS_COLUMNS = "job_id, status, stage, command, created, record, owner, finished"
SAVE_JOB = f"INSERT OR REPLACE INTO jobs ({JOBS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class JobFilter:
    status: JobStatus | None = None
    stage: str | None = None
    command: str | None = None
    owner: str | None = None  # a principal id

    def matches(self, record: JobRecord) -> bool:
        return (
            (self.status is None or record.status == self.status)
            and (self.stage is None or record.stage == self.stage)
            and (self.command is None or record.command == self.command)
            and (self.owner is None or record.owner == self.owner)
        )


@dataclass(frozen=True)
class JobPage:
    jobs: list[JobRecord]
    next_cursor: str | None


def finished_time(record: JobRecord) -> float | None:
    """Where a job's retention starts (ZYRA_JOB_TTL_S): its `finished_at` once terminal
    (its creation, for a terminal record without one); None while queued or running."""
    if not record.status.is_terminal():
        return None
    return (record.finished_at or record.created_at).timestamp()


# What `cursor_of` hands out (the creation time to the microsecond, then the job id),
# as `GET /jobs` declares its `cursor`.
CURSOR_PATTERN = r"^[0-9]+\.[0-9]{6}:[0-9a-f]{32}$"


def cursor_of(record: JobRecord) -> str:
    return f"{record.created_at.timestamp():.6f}:{record.job_id}"


def parse_cursor(cursor: str) -> tuple[float, str]:
    """Raises ValueError for a cursor this service did not hand out."""
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise ValueError("malformed cursor")
    ts, _, job_id = cursor.partition(":")
    return float(ts), job_id


# What `JobStore.update` applies: the record's new version, or None to leave it be.
Change = Callable[[JobRecord], JobRecord | None]


def expire_outputs(at: datetime) -> Change:
    def change(record: JobRecord) -> JobRecord | None:
        if record.outputs_expired_at is not None:
            return None
        return record.model_copy(update={"outputs_expired_at": at})

    return change


class JobStore(Protocol):
    def save(self, record: JobRecord) -> None: ...
    def get(self, job_id: str) -> JobRecord | None: ...
    def save_unless_terminal(self, record: JobRecord) -> bool:
        """Save unless the stored record is already terminal; whether it was saved."""
        ...

    def list(self, flt: JobFilter, limit: int, cursor: str | None) -> JobPage: ...
    def active(self) -> list[JobRecord]: ...
    def finished_before(self, cutoff: datetime, limit: int) -> list[str]:
        """Ids of terminal jobs finished before `cutoff`, oldest first."""
        ...

    def forget(self, job_ids: Sequence[str]) -> None:
        """Delete the jobs' records and every index entry of them."""
        ...

    def update(self, job_id: str, change: Change) -> JobRecord | None:
        """Replace a record with `change(record)` atomically (no other write in between);
        the new record, or None when there is none or `change` returned None."""
        ...

    def finished_since(self, cutoff: datetime) -> list[str]:
        """The jobs that ended at or after `cutoff`."""
        ...

    def mark_outputs_expired(self, job_id: str, at: datetime) -> bool:
        """Record when the job's outputs left storage (the first time only); whether
        the record changed."""
        ...


class SqliteJobStore:
    """Durable across restarts and shared by every process on one machine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = SqliteFile(
            path,
            (
                JOBS_TABLE,
                "CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (created DESC, job_id)",
                "CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created DESC, job_id)",
                "CREATE INDEX IF NOT EXISTS jobs_by_finished ON jobs (finished)",
            ),
            timeout_s=30,
            upgrade=self._upgrade,
        )

    @classmethod
    def _upgrade(cls, db: sqlite3.Connection) -> None:
        """Bring an older file's table up to date, in place:
        - the first layout (job_id, status, created_at, record) kept only what `get`
          needed: rebuild the columns listing filters on from each record;
        - the second had no `owner`: add it, filled from each record (records from
          before principals belong to `key:<submitted_by>`, records.py);
        - the third had no `finished` (when retention starts): add it, likewise."""
        db.execute("BEGIN IMMEDIATE")  # another process may be upgrading the same file
        try:
            columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            if columns and "created" not in columns:
                records = cls._records_of(db)
                db.execute("DROP TABLE jobs")
                db.execute(JOBS_TABLE)
                db.executemany(SAVE_JOB, [cls._row(r) for r in records])
            elif columns and "owner" not in columns:
                db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
                db.executemany(
                    "UPDATE jobs SET owner = ? WHERE job_id = ?",
                    [(r.owner, r.job_id) for r in cls._records_of(db)],
                )
            if columns and "finished" not in {r[1] for r in db.execute("PRAGMA table_info(jobs)")}:
                db.execute("ALTER TABLE jobs ADD COLUMN finished REAL")
                db.executemany(
                    "UPDATE jobs SET finished = ? WHERE job_id = ?",
                    [(finished_time(r), r.job_id) for r in cls._records_of(db)],
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @staticmethod
    def _records_of(db: sqlite3.Connection) -> list[JobRecord]:
        return [JobRecord.model_validate_json(r[0]) for r in db.execute("SELECT record FROM jobs")]

    @staticmethod
    def _row(record: JobRecord) -> tuple:
        return (
            record.job_id,
            record.status.value,
            record.stage,
            record.command,
            record.created_at.timestamp(),
            record.model_dump_json(),
            record.owner,
            finished_time(record),
        )

    def save(self, record: JobRecord) -> None:
        with self._file.connect() as db:
            db.execute(SAVE_JOB, self._row(record))

    def save_unless_terminal(self, record: JobRecord) -> bool:
        with self._file.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT status FROM jobs WHERE job_id = ?", (record.job_id,)
            ).fetchone()
            if row and JobStatus(row[0]).is_terminal():
                db.execute("ROLLBACK")
                return False
            db.execute(SAVE_JOB, self._row(record))
            db.execute("COMMIT")
        return True

    def get(self, job_id: str) -> JobRecord | None:
        with self._file.connect() as db:
            row = db.execute("SELECT record FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return JobRecord.model_validate_json(row[0]) if row else None

    def list(self, flt: JobFilter, limit: int, cursor: str | None) -> JobPage:
        where, params = ["1=1"], []
        for column, value in (
            ("status", flt.status),
            ("stage", flt.stage),
            ("command", flt.command),
            ("owner", flt.owner),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        if cursor:
            ts, job_id = parse_cursor(cursor)
            where.append("(created < ? OR (created = ? AND job_id > ?))")
            params += [ts, ts, job_id]
        with self._file.connect() as db:
            rows = db.execute(
                f"SELECT record FROM jobs WHERE {' AND '.join(where)}"
                " ORDER BY created DESC, job_id LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        jobs = [JobRecord.model_validate_json(r[0]) for r in rows]
        more = len(jobs) > limit
        jobs = jobs[:limit]
        return JobPage(jobs, cursor_of(jobs[-1]) if more and jobs else None)

    def active(self) -> list[JobRecord]:
        terminal = [s.value for s in JobStatus if s.is_terminal()]
        with self._file.connect() as db:
            rows = db.execute(
                f"SELECT record FROM jobs WHERE status NOT IN ({','.join('?' * len(terminal))})",
                terminal,
            ).fetchall()
        return [JobRecord.model_validate_json(r[0]) for r in rows]

    def finished_before(self, cutoff: datetime, limit: int) -> list[str]:
        with self._file.connect() as db:
            rows = db.execute(
                "SELECT job_id FROM jobs WHERE finished < ? ORDER BY finished LIMIT ?",
                (cutoff.timestamp(), limit),
            ).fetchall()
        return [job_id for (job_id,) in rows]

    def forget(self, job_ids: Sequence[str]) -> None:
        with self._file.connect() as db:
            db.execute("BEGIN IMMEDIATE")  # one transaction for the batch
            db.executemany("DELETE FROM jobs WHERE job_id = ?", [(j,) for j in job_ids])
            db.execute("COMMIT")
        self._file.reclaim()

    def update(self, job_id: str, change: Change) -> JobRecord | None:
        with self._file.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT record FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            changed = change(JobRecord.model_validate_json(row[0])) if row else None
            if changed is None:
                db.execute("ROLLBACK")
                return None
            db.execute(SAVE_JOB, self._row(changed))
            db.execute("COMMIT")
        return changed

    def finished_since(self, cutoff: datetime) -> list[str]:
        with self._file.connect() as db:
            rows = db.execute(
                "SELECT job_id FROM jobs WHERE finished >= ? ORDER BY finished",
                (cutoff.timestamp(),),
            ).fetchall()
        return [job_id for (job_id,) in rows]

    def mark_outputs_expired(self, job_id: str, at: datetime) -> bool:
        return self.update(job_id, expire_outputs(at)) is not None
