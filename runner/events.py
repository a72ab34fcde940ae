"""The event schema of a job and the logs that keep its events.

One event per chunk of output, progress step or status change:
``{"seq", "ts", "stdout"|"stderr", "progress", "status", "exit_code", "reason"}``.
`seq` counts from 1 per job, assigned by the log itself, so several writers
(the runner, the API) never collide and a reader resumes with "after seq N".

Two logs with one interface:
- `RedisEventLog`: a Redis Stream per job whose entry ids are ``<seq>-0``
  (seq from an INCR in the same Lua call, so ids stay dense and ordered). A
  stream, not pub/sub: pub/sub forgets whatever was published while a client
  was not connected; a stream keeps the history, so a client that connects
  late or reconnects with `since` loses nothing. Capped with MAXLEN and
  expiring with the job.
- `SqliteEventLog`: the embedded default, a table in one SQLite file that the
  API and the local runner processes share.

The runner's final result (exit code, reason, outputs) is stored beside the
events, so whoever finalises the job (the API, now or after a restart) reads
it from the log rather than from the runner process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, model_validator

from runner.dependencies import DependencyUnavailableError
from runner.lifecycle import ExitReason, JobStatus, known_reason
from runner.outputs import OutputFile
from runner.sqlite_file import SqliteFile


class JobEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: int
    ts: float
    stdout: str | None = None
    stderr: str | None = None
    progress: float | None = None
    status: JobStatus | None = None
    exit_code: int | None = None
    reason: ExitReason | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_reason(cls, fields: Any) -> Any:
        return known_reason(fields)

    @property
    def is_terminal(self) -> bool:
        return self.status is not None and self.status.is_terminal()

    def message(self) -> dict[str, Any]:
        """The WebSocket/SSE message: only the fields this event carries, as strings."""
        return self.model_dump(mode="json", exclude_none=True)


class RunnerResult(BaseModel):
    """What the runner reports when its command has ended."""

    exit_code: int
    reason: ExitReason
    duration_s: float
    outputs: list[OutputFile]
    stdout_is_binary: bool = False


class EventLog(Protocol):
    def append(self, job_id: str, **fields: Any) -> JobEvent: ...
    def read(self, job_id: str, after: int = 0, limit: int = 1000) -> list[JobEvent]: ...
    def set_result(self, job_id: str, result: RunnerResult) -> None: ...
    def get_result(self, job_id: str) -> RunnerResult | None: ...
    def expire(self, job_id: str, ttl_s: int) -> None: ...
    def forget(self, job_ids: Sequence[str]) -> None:
        """Delete the jobs' events, sequences and results (their retention ended)."""
        ...


def _payload(fields: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in fields.items() if v is not None})


# --- Redis ----------------------------------------------------------------------------------

_APPEND_LUA = """
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], seq .. '-0', 'e', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return seq
"""


class RedisEventLog:
    def __init__(
        self, url: str, prefix: str = "zyra", max_len: int = 1_000_000, ttl_s: int = 7 * 86400
    ) -> None:
        import redis
        from redis.exceptions import NoPermissionError

        self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        # NOPERM too: a runner's per-job user may run the append script but not load it;
        # when Redis has lost its script cache, the runner waits as in an outage until
        # the API loads the script again (api/jobs/runner_credentials.py).
        self._errors = (redis.ConnectionError, redis.TimeoutError, NoPermissionError)
        self._append = self._redis.register_script(_APPEND_LUA)
        self.prefix, self.max_len, self.ttl_s = prefix, max_len, ttl_s

    def keys(self, job_id: str) -> tuple[str, str, str]:
        """The job's event stream, sequence counter and result (all a runner writes)."""
        base = f"{self.prefix}:job:{job_id}"
        return f"{base}:events", f"{base}:seq", f"{base}:result"

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise DependencyUnavailableError("Redis", exc) from exc

    def load_scripts(self) -> None:
        """Put the append script in Redis's script cache: a runner's per-job user may
        run it (EVALSHA) but not load it, and the cache does not survive a restart."""
        with self._guard():
            self._append.sha = self._redis.script_load(self._append.script)

    def append(self, job_id: str, **fields: Any) -> JobEvent:
        events, seq_key, _ = self.keys(job_id)
        fields["ts"] = fields.get("ts") or time.time()
        with self._guard():
            seq = int(self._append(keys=[events, seq_key],
                                   args=[self.max_len, _payload(fields), self.ttl_s]))  # fmt: skip
        return JobEvent(seq=seq, **fields)

    @staticmethod
    def _decode(entries: list) -> list[JobEvent]:
        out = []
        for entry_id, data in entries:
            seq = int(entry_id.split(b"-")[0])
            out.append(JobEvent(seq=seq, **json.loads(data[b"e"])))
        return out

    def read(self, job_id: str, after: int = 0, limit: int = 1000) -> list[JobEvent]:
        events, _, _ = self.keys(job_id)
        with self._guard():
            return self._decode(self._redis.xrange(events, f"({after}-0", "+", count=limit))

    def set_result(self, job_id: str, result: RunnerResult) -> None:
        with self._guard():
            self._redis.set(self.keys(job_id)[2], result.model_dump_json(), ex=self.ttl_s)

    def get_result(self, job_id: str) -> RunnerResult | None:
        with self._guard():
            raw = self._redis.get(self.keys(job_id)[2])
        return RunnerResult.model_validate_json(raw) if raw else None

    def expire(self, job_id: str, ttl_s: int) -> None:
        with self._guard():
            for key in self.keys(job_id):
                self._redis.expire(key, ttl_s)

    def forget(self, job_ids: Sequence[str]) -> None:
        keys = [key for job_id in job_ids for key in self.keys(job_id)]
        if keys:
            with self._guard():
                self._redis.unlink(*keys)  # freed in the background: streams may be long


# --- SQLite (embedded) ----------------------------------------------------------------------


class SqliteEventLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = SqliteFile(
            path,
            (
                "CREATE TABLE IF NOT EXISTS events (job_id TEXT NOT NULL, seq INTEGER NOT NULL,"
                " data TEXT NOT NULL, PRIMARY KEY (job_id, seq))",
                "CREATE TABLE IF NOT EXISTS results (job_id TEXT PRIMARY KEY, data TEXT NOT NULL)",
            ),
        )

    def append(self, job_id: str, **fields: Any) -> JobEvent:
        fields["ts"] = fields.get("ts") or time.time()
        with self._file.connect() as db:
            db.execute("BEGIN IMMEDIATE")  # one writer at a time: seq stays dense
            (seq,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id = ?", (job_id,)
            ).fetchone()
            db.execute(
                "INSERT INTO events (job_id, seq, data) VALUES (?, ?, ?)",
                (job_id, seq, _payload(fields)),
            )
            db.execute("COMMIT")
        return JobEvent(seq=seq, **fields)

    def read(self, job_id: str, after: int = 0, limit: int = 1000) -> list[JobEvent]:
        with self._file.connect() as db:
            rows = db.execute(
                "SELECT seq, data FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (job_id, after, limit),
            ).fetchall()
        return [JobEvent(seq=seq, **json.loads(data)) for seq, data in rows]

    def set_result(self, job_id: str, result: RunnerResult) -> None:
        with self._file.connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO results (job_id, data) VALUES (?, ?)",
                (job_id, result.model_dump_json()),
            )

    def get_result(self, job_id: str) -> RunnerResult | None:
        with self._file.connect() as db:
            row = db.execute("SELECT data FROM results WHERE job_id = ?", (job_id,)).fetchone()
        return RunnerResult.model_validate_json(row[0]) if row else None

    def expire(self, job_id: str, ttl_s: int) -> None:
        """The embedded log keeps its events until `forget`: nothing in it expires."""

    def forget(self, job_ids: Sequence[str]) -> None:
        ids = [(job_id,) for job_id in job_ids]
        with self._file.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("DELETE FROM events WHERE job_id = ?", ids)
            db.executemany("DELETE FROM results WHERE job_id = ?", ids)
            db.execute("COMMIT")
        self._file.reclaim()


def event_log_from(redis_url: str | None, sqlite_path: Path) -> EventLog:
    return RedisEventLog(redis_url) if redis_url else SqliteEventLog(sqlite_path)
