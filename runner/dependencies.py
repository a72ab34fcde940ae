"""The error for a store the service relies on being unreachable (Redis, S3)."""

from collections.abc import Iterator
from contextlib import contextmanager


class DependencyUnavailableError(RuntimeError):
    """A store the service relies on cannot be reached (e.g. Redis is down)."""

    def __init__(self, dependency: str, cause: Exception) -> None:
        self.dependency = dependency
        super().__init__(f"{dependency} is unavailable: {cause}")


@contextmanager
def redis_reachable() -> Iterator[None]:
    """Redis connection trouble, raised as DependencyUnavailableError naming Redis."""
    import redis  # the API and runners have it; the catalog and argv code need not

    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise DependencyUnavailableError("Redis", exc) from exc
