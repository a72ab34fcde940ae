"""An in-process app (real template process, real Zyra) for request-level tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.server import create_app
from api.settings import Settings

KEY = "unit-key"


@pytest.fixture(scope="package")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        api_keys=[f"unit:{KEY}"],
        data_dir=tmp_path_factory.mktemp("data"),
        sync_timeout_max_s=30,
    )
    with TestClient(create_app(settings), headers={"X-API-Key": KEY}) as client:
        yield client
