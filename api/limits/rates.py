"""Request rates over a moving window: at most N in any W seconds.

Counted with the `limits` package: in Redis when the service has one (every worker
and replica then shares the counts), else in this process's memory (the embedded
default runs one process). A moving window, not a fixed one: a fixed window lets a
client send 2N requests across a window's edge, and its Retry-After would say when
the window ends rather than when a request is allowed again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from runner.dependencies import DependencyUnavailableError

REDIS_KEY_PREFIX = "zyra:limits"


class LimitName(StrEnum):
    """Every limit, as 429 answers and docs/security.md name it."""

    PRINCIPAL_REQUESTS = "requests per principal"
    SYNC_RUNS = "sync runs per principal"
    ADDRESS_REQUESTS = "unauthenticated requests per address"
    FAILED_AUTHENTICATIONS = "failed authentications per address"
    CONCURRENT_SYNC_RUNS = "concurrent sync runs per principal"


@dataclass(frozen=True)
class Rate:
    name: LimitName
    amount: int  # per window; 0: no limit
    window_s: int

    @property
    def on(self) -> bool:
        return self.amount > 0

    def describe(self) -> str:
        return f"{self.name}: {self.amount} per {self.window_s} s"


@dataclass(frozen=True)
class Verdict:
    """One request weighed against one rate."""

    rate: Rate
    allowed: bool
    remaining: int
    reset_s: float  # until the oldest request counted leaves the window

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.reset_s))

    def headers(self) -> dict[str, str]:
        """The IETF draft's (draft-ietf-httpapi-ratelimit-headers) fields."""
        return {
            "RateLimit-Limit": str(self.rate.amount),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(max(0, math.ceil(self.reset_s))),
            "RateLimit-Policy": f"{self.rate.amount};w={self.rate.window_s}",
        }


class RateLimiter:
    def __init__(self, redis_url: str | None = None) -> None:
        storage: MemoryStorage | RedisStorage
        if redis_url:
            storage = RedisStorage(
                f"async+{redis_url}",
                implementation="redispy",
                wrap_exceptions=True,
                key_prefix=REDIS_KEY_PREFIX,
                socket_timeout=5,
                socket_connect_timeout=5,
            )
        else:
            storage = MemoryStorage()
        self._strategy = MovingWindowRateLimiter(storage)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Never open silently: without Redis nothing can be counted, so 503."""
        try:
            yield
        except StorageError as exc:
            raise DependencyUnavailableError("Redis", exc.storage_error) from exc

    async def hit(self, rate: Rate, key: str) -> Verdict:
        """Count one request under `key`, unless that would exceed the rate."""
        item = RateLimitItemPerSecond(rate.amount, rate.window_s, namespace=rate.name.name)
        with self._guard():
            allowed = await self._strategy.hit(item, key)
            stats = await self._strategy.get_window_stats(item, key)
        return Verdict(rate, allowed, max(0, stats.remaining), stats.reset_time - time.time())

    async def peek(self, rate: Rate, key: str) -> Verdict:
        """Whether one more would be allowed, counting nothing."""
        item = RateLimitItemPerSecond(rate.amount, rate.window_s, namespace=rate.name.name)
        with self._guard():
            stats = await self._strategy.get_window_stats(item, key)
        remaining = max(0, stats.remaining)
        return Verdict(rate, remaining > 0, remaining, stats.reset_time - time.time())
