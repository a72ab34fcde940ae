"""Each job store test runs against both stores: the embedded SQLite one and a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.jobs.redis_store import RedisJobStore
from api.jobs.store import JobStore, SqliteJobStore
from tests.services import RedisServer


@pytest.fixture(params=["sqlite", "redis"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> Iterator[JobStore]:
    if request.param == "sqlite":
        yield SqliteJobStore(tmp_path / "jobs.sqlite3")
    else:
        yield RedisJobStore(redis_server.url, prefix=f"t{uuid.uuid4().hex}")
