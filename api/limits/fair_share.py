"""Fair shares of async runners: each principal's waiting jobs, in order, and the jobs
it has handed to the backend (its "running" jobs, whether started yet or not).

A job is *claimed* from the head of its principal's queue only while that principal
has fewer than its cap running, and only by an API process of the job's *dispatch
group*: the processes able to start it (the Kubernetes backend: any replica; the local
backend: the process whose machine holds the job's files). A claim moves the job from
waiting to running in one step, so two processes never both start it and the cap holds
across processes:

- Redis: a list (the queue), two hashes (each waiting job's group and spec) and a set
  (running) per principal, plus the set of principals with waiting jobs; claims are a
  Lua script.
- Embedded default: two tables of a SQLite file in the data dir, claims in one
  `BEGIN IMMEDIATE` transaction.

Both survive an API restart: what waits is dispatched again at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import redis

from runner.dependencies import redis_reachable
from runner.sqlite_file import SqliteFile


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    spec: str  # the runner's JobSpec, as JSON


class FairShareQueue(Protocol):
    def enqueue(self, owner: str, job_id: str, group: str, spec: str) -> None:
        """At the end of `owner`'s queue."""
        ...

    def claim(self, owner: str, group: str, cap: int) -> list[QueuedJob]:
        """Move jobs from the head of `owner`'s queue to its running ones while it has
        fewer than `cap` (0: no cap) and the head belongs to `group`; in order."""
        ...

    def put_back(self, owner: str, group: str, jobs: list[QueuedJob]) -> None:
        """Undo a claim (the backend could not take them): first in line again, in order."""
        ...

    def withdraw(self, owner: str, job_id: str) -> bool:
        """Out of the queue; whether it was still waiting there."""
        ...

    def release(self, owner: str, job_id: str) -> None:
        """No longer running."""
        ...

    def running(self, owner: str) -> set[str]: ...

    def waiting_owners(self) -> set[str]: ...

    def waiting_jobs(self) -> set[str]: ...


# --- Redis ----------------------------------------------------------------------------------

# KEYS: queue, groups, specs, running, owners; ARGV: cap, group, owner.
_CLAIM_LUA = """
local cap = tonumber(ARGV[1])
local claimed = {}
while cap == 0 or redis.call('SCARD', KEYS[4]) < cap do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then break end
  local spec = redis.call('HGET', KEYS[3], head)
  if spec and redis.call('HGET', KEYS[2], head) ~= ARGV[2] then break end
  redis.call('LPOP', KEYS[1])
  redis.call('HDEL', KEYS[2], head)
  redis.call('HDEL', KEYS[3], head)
  if spec then
    redis.call('SADD', KEYS[4], head)
    table.insert(claimed, head)
    table.insert(claimed, spec)
  end
end
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[5], ARGV[3]) end
return claimed
"""

# KEYS: queue, groups, specs, owners; ARGV: job id, owner.
_WITHDRAW_LUA = """
local removed = redis.call('LREM', KEYS[1], 0, ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[4], ARGV[2]) end
return removed
"""


class RedisFairShareQueue:
    def __init__(self, url: str, prefix: str = "zyra:fair-share") -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self.prefix = prefix
        self._owners = f"{prefix}:owners"
        self._claim = self._redis.register_script(_CLAIM_LUA)
        self._withdraw = self._redis.register_script(_WITHDRAW_LUA)

    def _keys(self, owner: str) -> tuple[str, str, str, str]:
        """The owner's queue, waiting jobs' groups and specs, and running jobs."""
        base = f"{self.prefix}:owner:{owner}"
        return f"{base}:queue", f"{base}:groups", f"{base}:specs", f"{base}:running"

    def enqueue(self, owner: str, job_id: str, group: str, spec: str) -> None:
        queue, groups, specs, _ = self._keys(owner)
        with redis_reachable(), self._redis.pipeline() as pipe:  # MULTI/EXEC: all or nothing
            pipe.hset(groups, job_id, group)
            pipe.hset(specs, job_id, spec)
            pipe.rpush(queue, job_id)
            pipe.sadd(self._owners, owner)
            pipe.execute()

    def claim(self, owner: str, group: str, cap: int) -> list[QueuedJob]:
        with redis_reachable():
            flat = self._claim(keys=[*self._keys(owner), self._owners], args=[cap, group, owner])
        return [QueuedJob(flat[i].decode(), flat[i + 1].decode()) for i in range(0, len(flat), 2)]

    def put_back(self, owner: str, group: str, jobs: list[QueuedJob]) -> None:
        queue, groups, specs, running = self._keys(owner)
        with redis_reachable(), self._redis.pipeline() as pipe:
            for job in reversed(jobs):
                pipe.srem(running, job.job_id)
                pipe.hset(groups, job.job_id, group)
                pipe.hset(specs, job.job_id, job.spec)
                pipe.lpush(queue, job.job_id)
            pipe.sadd(self._owners, owner)
            pipe.execute()

    def withdraw(self, owner: str, job_id: str) -> bool:
        queue, groups, specs, _ = self._keys(owner)
        with redis_reachable():
            return bool(self._withdraw(keys=[queue, groups, specs, self._owners],
                                       args=[job_id, owner]))  # fmt: skip

    def release(self, owner: str, job_id: str) -> None:
        with redis_reachable():
            self._redis.srem(self._keys(owner)[3], job_id)

    def running(self, owner: str) -> set[str]:
        with redis_reachable():
            return {m.decode() for m in self._redis.smembers(self._keys(owner)[3])}

    def waiting_owners(self) -> set[str]:
        with redis_reachable():
            return {m.decode() for m in self._redis.smembers(self._owners)}

    def waiting_jobs(self) -> set[str]:
        jobs: set[str] = set()
        for owner in self.waiting_owners():
            with redis_reachable():
                jobs.update(m.decode() for m in self._redis.lrange(self._keys(owner)[0], 0, -1))
        return jobs


# --- SQLite (embedded default) --------------------------------------------------------------

_TABLES = (
    "CREATE TABLE IF NOT EXISTS waiting (position INTEGER PRIMARY KEY AUTOINCREMENT,"
    " owner TEXT NOT NULL, job_id TEXT NOT NULL UNIQUE, dispatch_group TEXT NOT NULL,"
    " spec TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS waiting_by_owner ON waiting (owner, position)",
    "CREATE TABLE IF NOT EXISTS running (owner TEXT NOT NULL, job_id TEXT NOT NULL,"
    " PRIMARY KEY (owner, job_id))",
)


class SqliteFairShareQueue:
    def __init__(self, path: Path) -> None:
        self._file = SqliteFile(path, _TABLES, timeout_s=30)

    def enqueue(self, owner: str, job_id: str, group: str, spec: str) -> None:
        with self._file.connect() as db:
            db.execute(
                "INSERT INTO waiting (owner, job_id, dispatch_group, spec) VALUES (?, ?, ?, ?)",
                (owner, job_id, group, spec),
            )

    def claim(self, owner: str, group: str, cap: int) -> list[QueuedJob]:
        claimed: list[QueuedJob] = []
        with self._file.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                (running,) = db.execute(
                    "SELECT COUNT(*) FROM running WHERE owner = ?", (owner,)
                ).fetchone()
                while not cap or running + len(claimed) < cap:
                    head = db.execute(
                        "SELECT position, job_id, dispatch_group, spec FROM waiting"
                        " WHERE owner = ? ORDER BY position LIMIT 1",
                        (owner,),
                    ).fetchone()
                    if head is None or head[2] != group:
                        break
                    db.execute("DELETE FROM waiting WHERE position = ?", (head[0],))
                    db.execute("INSERT OR IGNORE INTO running VALUES (?, ?)", (owner, head[1]))
                    claimed.append(QueuedJob(head[1], head[3]))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return claimed

    def put_back(self, owner: str, group: str, jobs: list[QueuedJob]) -> None:
        with self._file.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for job in reversed(jobs):
                    db.execute(
                        "DELETE FROM running WHERE owner = ? AND job_id = ?", (owner, job.job_id)
                    )
                    db.execute(
                        "INSERT INTO waiting VALUES ("
                        " (SELECT COALESCE(MIN(position), 1) - 1 FROM waiting), ?, ?, ?, ?)",
                        (owner, job.job_id, group, job.spec),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def withdraw(self, owner: str, job_id: str) -> bool:
        with self._file.connect() as db:
            gone = db.execute(
                "DELETE FROM waiting WHERE owner = ? AND job_id = ?", (owner, job_id)
            ).rowcount
        return gone > 0

    def release(self, owner: str, job_id: str) -> None:
        with self._file.connect() as db:
            db.execute("DELETE FROM running WHERE owner = ? AND job_id = ?", (owner, job_id))

    def running(self, owner: str) -> set[str]:
        with self._file.connect() as db:
            rows = db.execute("SELECT job_id FROM running WHERE owner = ?", (owner,)).fetchall()
        return {r[0] for r in rows}

    def waiting_owners(self) -> set[str]:
        with self._file.connect() as db:
            return {r[0] for r in db.execute("SELECT DISTINCT owner FROM waiting").fetchall()}

    def waiting_jobs(self) -> set[str]:
        with self._file.connect() as db:
            return {r[0] for r in db.execute("SELECT job_id FROM waiting").fetchall()}
