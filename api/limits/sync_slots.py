"""A cap on the sync runs one principal has executing at once.

Without it one caller could hold every sync slot of a process (ZYRA_SYNC_CONCURRENCY)
while everyone else's quick runs wait behind it. A run over its principal's cap is
refused at once (429) instead of waiting for a slot that others need.

Each run holds a lease that names when it must have ended (its timeout and kill grace);
a lease its API process never released (it died) lapses a margin after that. In Redis the
leases are one sorted set per principal (lease → end), taken by a Lua script, so the cap
holds across workers and replicas; on the embedded default they live in this process,
which is the only one running sync runs.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from typing import Protocol

import redis

from api.limits.errors import LimitExceededError
from api.limits.rates import LimitName
from runner.dependencies import redis_reachable

LAPSE_MARGIN_S = 60.0  # after its end, a lease nobody released no longer counts

# KEYS[1]: the principal's leases (lease → end); ARGV: now, cap (0: renew), lease, end,
# lapse margin. The key lives as long as its last lease.
_TAKE_LUA = """
local now, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[5]))
if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then
  return {0, redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]}
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2]
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(last) - now + tonumber(ARGV[5])))
return {1, ARGV[4]}
"""


class SyncRunSlots(Protocol):
    cap: int

    def acquire(self, owner: str, run_s: float) -> str | None:
        """A lease for a run that ends within `run_s` (None: no cap), or
        LimitExceededError while `owner` holds `cap` of them."""
        ...

    def renew(self, owner: str, lease: str | None, run_s: float) -> None:
        """The run starts only now (it waited for a process-wide slot)."""
        ...

    def release(self, owner: str, lease: str | None) -> None: ...


def _refusal(owner: str, cap: int, first_end_in_s: float) -> LimitExceededError:
    retry = max(1, math.ceil(first_end_in_s))
    detail = (
        f"{owner} already has {cap} sync runs executing, its limit of "
        f"{LimitName.CONCURRENT_SYNC_RUNS}: retry when one has ended (the first at the "
        f"latest in {retry} s), or run it with mode async"
    )
    return LimitExceededError(LimitName.CONCURRENT_SYNC_RUNS, detail, retry)


class LocalSyncRunSlots:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._ends: dict[str, dict[str, float]] = {}  # owner → lease → end
        self._lock = threading.Lock()

    def acquire(self, owner: str, run_s: float) -> str | None:
        if not self.cap:
            return None
        now = time.time()
        with self._lock:
            ends = self._ends.setdefault(owner, {})
            for lease, end in list(ends.items()):
                if end + LAPSE_MARGIN_S < now:
                    del ends[lease]
            if len(ends) >= self.cap:
                raise _refusal(owner, self.cap, min(ends.values()) - now)
            lease = uuid.uuid4().hex
            ends[lease] = now + run_s
            return lease

    def renew(self, owner: str, lease: str | None, run_s: float) -> None:
        if lease is not None:
            with self._lock:
                self._ends.setdefault(owner, {})[lease] = time.time() + run_s

    def release(self, owner: str, lease: str | None) -> None:
        if lease is None:
            return
        with self._lock:
            ends = self._ends.get(owner, {})
            ends.pop(lease, None)
            if not ends:
                self._ends.pop(owner, None)


class RedisSyncRunSlots:
    def __init__(self, url: str, cap: int, prefix: str = "zyra:limits:sync-runs") -> None:
        self.cap, self.prefix = cap, prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._take = self._redis.register_script(_TAKE_LUA)

    def _key(self, owner: str) -> str:
        return f"{self.prefix}:{owner}"

    def _run_take(self, owner: str, cap: int, lease: str, run_s: float) -> tuple[bool, float]:
        now = time.time()
        with redis_reachable():
            taken, end = self._take(
                keys=[self._key(owner)],
                args=[repr(now), cap, lease, repr(now + run_s), LAPSE_MARGIN_S],
            )
        return bool(taken), float(end) - now

    def acquire(self, owner: str, run_s: float) -> str | None:
        if not self.cap:
            return None
        lease = uuid.uuid4().hex
        taken, first_end_in_s = self._run_take(owner, self.cap, lease, run_s)
        if not taken:
            raise _refusal(owner, self.cap, first_end_in_s)
        return lease

    def renew(self, owner: str, lease: str | None, run_s: float) -> None:
        if lease is not None:
            self._run_take(owner, 0, lease, run_s)

    def release(self, owner: str, lease: str | None) -> None:
        if lease is not None:
            with redis_reachable():
                self._redis.zrem(self._key(owner), lease)
