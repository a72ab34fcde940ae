"""Real services the benches start on free loopback ports, configured as deployed."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.services import RedisServer


@contextmanager
def deployed_redis(folder: Path) -> Iterator[RedisServer]:
    """redis-server as the tests start it (tests/services.py), but with the AOF policy
    the chart and the compose file run: `appendfsync everysec`, Redis's default (the
    tests' `always` waits for the disk at every write)."""
    server = RedisServer(folder)
    server.start()
    try:
        with redis.Redis.from_url(server.url) as client:
            client.config_set("appendfsync", "everysec")
        yield server
    finally:
        server.stop()
