"""Per-job runner credentials (runner/credentials.py): minted when a runner starts,
revoked when its job is finalised. The API keeps the service's own keys.

- Redis: a user per job, `zyra-job-<job_id>` (ACL SETUSER, Redis 6.2+), that may
  touch only the job's event stream, sequence and result keys, with only what the
  runner's event log sends: EVALSHA of the append script (and the INCR, XADD and
  EXPIRE inside it), SET of the result, and what redis-py sends on connect (AUTH,
  SELECT of the database, CLIENT SETINFO on Redis 7.2+). No channels, no EVAL and
  no SCRIPT LOAD: the API loads the script, so a runner cannot run Lua of its own
  (and hold Redis busy).
- S3: presigned GET URLs for the job's inputs and a presigned POST policy for
  `results/<job_id>/` (each object up to the job's disk quota), signed for
  ZYRA_S3_ENDPOINT_URL, expiring after the job's timeout plus a margin.

Redis keeps ACL users (and scripts) in memory only. What re-creates a user, the
SHA-256 of its password (never the password), is kept beside the job records in
the hash `zyra:runner-users` (job id → digest), written and deleted with the user;
runners cannot read it. (Not in the job record: a read-modify-write of the record
could undo a concurrent cancel.) `sync` re-creates the users of active jobs that
Redis lost and deletes those of finished jobs; the API runs it at start-up and
every ZYRA_REDIS_ACL_SYNC_S. Periodic rather than on reconnect: redis-py reconnects
silently, and a round (a few cheap commands) also covers a failover to a replica
(ACLs are not replicated) and a finalisation that could not reach Redis.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import redis

from api.jobs.records import JobRecord
from runner.credentials import JobCredentials, S3Grant, UploadPolicy
from runner.dependencies import DependencyUnavailableError
from runner.events import RedisEventLog
from runner.spec import JobSpec
from runner.storage import S3Storage, results_prefix

log = logging.getLogger("zyra.credentials")

USER_PREFIX = "zyra-job-"
MAX_PRESIGN_S = 7 * 86400  # the longest an S3 (SigV4) signature may be valid
_RUNNER_COMMANDS = ("+evalsha", "+incr", "+xadd", "+expire", "+set", "+select")
_SETINFO = "+client|setinfo"  # Redis 7.2+; redis-py ignores a refusal, but ACL LOG would not


class RedisJobUsers:
    """The per-job Redis users, managed with the service's own Redis user."""

    def __init__(self, url: str, events: RedisEventLog) -> None:
        self.url, self.events = url, events
        self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._digests = f"{events.prefix}:runner-users"  # job id → SHA-256 of the password
        self._setinfo = True  # until Redis says it does not know CLIENT SETINFO

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise DependencyUnavailableError("Redis", exc) from exc
        except redis.ResponseError as exc:  # e.g. NOPERM: the service's user lacks +acl
            why = RuntimeError(f"cannot {action} ({exc}); runners' users need Redis 6.2+ and "
                               "the ACL command for the service's Redis user")  # fmt: skip
            raise DependencyUnavailableError("Redis", why) from exc

    @staticmethod
    def user(job_id: str) -> str:
        return USER_PREFIX + job_id

    def create(self, job_id: str) -> str:
        """A new user for the job; its Redis URL, password included."""
        password = secrets.token_hex(32)
        digest = hashlib.sha256(password.encode()).hexdigest()
        self.events.load_scripts()  # before any runner may need it
        with self._guard("keep a per-job Redis user"):
            self._redis.hset(self._digests, job_id, digest)
        self._set_user(job_id, digest)
        return self.runner_url(self.user(job_id), password)

    def runner_url(self, user: str, password: str) -> str:
        """The service's Redis URL (host, port, database, TLS) with the job's user."""
        parts = urlsplit(self.url)
        netloc = f"{user}:{password}@{parts.netloc.rpartition('@')[2]}"
        return urlunsplit(parts._replace(netloc=netloc))

    def _set_user(self, job_id: str, digest: str) -> None:
        """(Re-)create the job's user with its rules; idempotent."""
        keys = [f"~{key}" for key in self.events.keys(job_id)]
        rules = ["reset", "on", f"#{digest}", *keys, "resetchannels", "-@all", *_RUNNER_COMMANDS]
        with self._guard("create a per-job Redis user"):
            try:
                extra = [_SETINFO] if self._setinfo else []
                self._redis.execute_command("ACL", "SETUSER", self.user(job_id), *rules, *extra)
            except redis.ResponseError as exc:
                if not self._setinfo or _SETINFO not in str(exc):
                    raise
                self._setinfo = False  # an older Redis: redis-py's CLIENT SETINFO fails anyway
                self._redis.execute_command("ACL", "SETUSER", self.user(job_id), *rules)

    def restore(self, job_ids: set[str]) -> list[str]:
        """Re-create the users of these jobs that Redis lost; the ones re-created."""
        missing = sorted(job_ids - self.job_ids())
        if not missing:
            return []
        with self._guard("read the per-job Redis users"):
            digests = self._redis.hmget(self._digests, missing)
        restored = []
        for job_id, digest in zip(missing, digests, strict=True):
            if digest is not None:  # none: its runner has not started yet
                self._set_user(job_id, digest.decode())
                restored.append(job_id)
        return restored

    def delete(self, job_id: str) -> None:
        """Delete the job's user; Redis also disconnects whoever is logged in as it."""
        with self._guard("delete a per-job Redis user"), self._redis.pipeline() as pipe:
            pipe.execute_command("ACL", "DELUSER", self.user(job_id))
            pipe.hdel(self._digests, job_id)
            pipe.execute()

    def job_ids(self) -> set[str]:
        """Jobs that have a user in Redis now."""
        with self._guard("list the per-job Redis users"):
            users = self._redis.execute_command("ACL", "USERS")
        names = (u.decode() if isinstance(u, bytes) else u for u in users)
        return {name.removeprefix(USER_PREFIX) for name in names if name.startswith(USER_PREFIX)}

    def kept_job_ids(self) -> set[str]:
        """Jobs whose user this service keeps (users of another deployment are not here)."""
        with self._guard("read the per-job Redis users"):
            return {job_id.decode() for job_id in self._redis.hkeys(self._digests)}


class RunnerCredentials:
    """Mints and revokes what one runner may use; nothing with the embedded stores."""

    def __init__(self, redis_users: RedisJobUsers | None, s3: S3Storage | None) -> None:
        self.redis_users, self.s3 = redis_users, s3

    def mint(self, spec: JobSpec, lifetime_s: float) -> JobCredentials | None:
        """Credentials for the job's runner: S3 URLs valid for `lifetime_s`, a Redis
        user until revoked."""
        if self.redis_users is None and self.s3 is None:
            return None
        redis_url = self.redis_users.create(spec.job_id) if self.redis_users else None
        return JobCredentials(redis_url=redis_url, s3=self._s3_grant(spec, lifetime_s))

    def _s3_grant(self, spec: JobSpec, lifetime_s: float) -> S3Grant | None:
        if self.s3 is None:
            return None
        expires_s = min(math.ceil(lifetime_s), MAX_PRESIGN_S)
        prefix = results_prefix(spec.job_id) + "/"
        max_bytes = spec.quotas.disk_bytes
        url, fields = self.s3.presign_post(prefix, max_bytes, expires_s)
        inputs = {item.key: self.s3.presign_get(item.key, expires_s)
                  for item in spec.inputs if item.key is not None}  # fmt: skip
        upload = UploadPolicy(url=url, fields=fields, key_prefix=prefix, max_bytes=max_bytes)
        return S3Grant(inputs=inputs, upload=upload)

    def revoke(self, job_id: str) -> None:
        """The runner's Redis user goes (presigned URLs cannot be revoked: they expire)."""
        if self.redis_users is not None:
            self.redis_users.delete(job_id)

    def sync(self, active: list[JobRecord], lookup: Callable[[str], JobRecord | None]) -> None:
        """Re-create the users of active jobs that Redis lost; delete those of jobs that
        are finished (or gone)."""
        users = self.redis_users
        if users is None:
            return
        users.events.load_scripts()  # first: a re-created user may not load it itself
        active_ids = {record.job_id for record in active}
        for job_id in users.restore(active_ids):
            log.warning("re-created the Redis user of job %s (Redis had lost it)", job_id)
        kept = users.kept_job_ids()
        for job_id in (kept | users.job_ids()) - active_ids:
            record = lookup(job_id)  # not in `active`: finished, or submitted since
            # A user of no job of ours may be another deployment's on the same server.
            if record.status.is_terminal() if record else job_id in kept:
                users.delete(job_id)


class CredentialKeeper:
    """Runs `sync` every `interval_s` in a thread; a Redis outage only skips a round."""

    def __init__(self, sync: Callable[[], None], interval_s: float) -> None:
        self.sync, self.interval_s = sync, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="credential-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync()
            except DependencyUnavailableError as exc:
                log.debug("runner users not checked: %s", exc)
            except Exception:  # never let the keeper die
                log.exception("runner users not checked")
