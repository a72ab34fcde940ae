"""Each event log test runs against both logs: the embedded SQLite one and a real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.events import EventLog, RedisEventLog, SqliteEventLog
from tests.services import RedisServer


@pytest.fixture(params=["sqlite", "redis"])
def log(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> Iterator[EventLog]:
    if request.param == "sqlite":
        yield SqliteEventLog(tmp_path / "events.sqlite3")
    else:
        yield RedisEventLog(redis_server.url[:-1] + "3", prefix=f"t{time.time_ns()}")
