"""A real API server for the client's tests, and how to run `zyra-remote` as a user."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from zyra_client import Client

from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api

ZYRA_REMOTE = Path(sys.executable).parent / "zyra-remote"
HEATMAP_FLAGS = ["--no-coastline", "--no-borders", "--no-gridlines"]
HEATMAP_ARGS = {"no_coastline": True, "no_borders": True, "no_gridlines": True}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Iterator[ApiServer]:
    api = start_api(tmp_path_factory.mktemp("client-api"), inputs, ZYRA_KILL_GRACE_S="2")
    yield api
    stop_api(api)


@pytest.fixture
def zyra(server: ApiServer) -> Iterator[Client]:
    with Client(server.url, api_key=API_KEY) as client:
        yield client


@pytest.fixture
def user_env(server: ApiServer, tmp_path: Path) -> dict[str, str]:
    """A shell of a user of this server: its own config and cache folders."""
    return {
        **os.environ,
        "ZYRA_URL": server.url,
        "ZYRA_API_KEY": API_KEY,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }


def upload_count(server: ApiServer) -> int:
    folder = server.data_dir / "storage" / "uploads"
    return len(list(folder.iterdir())) if folder.is_dir() else 0


def wait_for_status(client: Client, job_id: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while client.job(job_id).view.status != status:
        assert time.monotonic() < deadline, f"job {job_id} never became {status}"
        time.sleep(0.1)
