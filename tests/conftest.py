"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runner.catalog import CommandCatalog
from tests.services import RedisServer, S3Server


@pytest.fixture(scope="session")
def catalog() -> CommandCatalog:
    return CommandCatalog.from_zyra()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("minio"))
    server.start()
    yield server
    server.stop()
