"""A real API server process on a free loopback port, and small inputs made here."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.jobs.redis_store import RedisJobStore
from api.jobs.store import JobStore, SqliteJobStore
from tests.services import free_port, wait_ready

API_KEY = "e2e-secret-key"
# Tests of other features poll fast and run many jobs at once under one key: no rate
# limit or fair-share cap unless a test sets one (tests/e2e/test_rate_limits.py, …).
LIMITS_OFF = {
    "ZYRA_RATE_LIMIT_PER_PRINCIPAL": "0",
    "ZYRA_RATE_LIMIT_SYNC_RUNS_PER_PRINCIPAL": "0",
    "ZYRA_RATE_LIMIT_PER_IP": "0",
    "ZYRA_RATE_LIMIT_FAILED_AUTH_PER_IP": "0",
    "ZYRA_MAX_SYNC_RUNS_PER_PRINCIPAL": "0",
    "ZYRA_MAX_RUNNING_JOBS_PER_PRINCIPAL": "0",
}


@dataclass
class ApiServer:
    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    env: dict[str, str]

    def client(self, key: str | None = API_KEY, timeout: float = 120) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


def start_api(tmp: Path, inputs: Path, *, checkout: Path | None = None, **env: str) -> ApiServer:
    """An API on loopback. Tests fetch from servers of their own on 127.0.0.1 (e.g.
    `silent_server`), so that address is allowed unless `ZYRA_OUTBOUND_ALLOW` is given.
    `checkout`: run another checkout's code with its own `.venv` (benchmarks)."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    data_dir = tmp / "data"
    log_path = tmp / "api.log"
    full_env = {
        **os.environ,
        "ZYRA_API_KEYS": f"e2e:{API_KEY}",
        "ZYRA_DATA_DIR": str(data_dir),
        "ZYRA_ALLOWED_PATH_PREFIXES": str(inputs),
        "ZYRA_PORT": str(port),
        "ZYRA_OUTBOUND_ALLOW": "127.0.0.1",
        **LIMITS_OFF,
        **env,
    }
    with log_path.open("wb") as log:
        python = str(checkout / ".venv" / "bin" / "python") if checkout else sys.executable
        process = subprocess.Popen(
            [python, "-m", "api"], env=full_env, stdout=log, stderr=subprocess.STDOUT,
            cwd=checkout,
        )  # fmt: skip
    server = ApiServer(f"http://127.0.0.1:{port}", process, data_dir, log_path, env)
    if wait_ready(f"{server.url}/readyz", process, log_path.read_text, timeout=120):
        return server
    process.kill()
    raise RuntimeError(f"API not ready in time:\n{log_path.read_text()}")


def unreachable_kubeconfig(path: Path) -> Path:
    """A kubeconfig at `path` naming a port nothing listens on: an API with the
    Kubernetes backend and no cluster (its watcher retries, a Job create fails)."""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: none\n"
        'clusters: [{name: none, cluster: {server: "http://127.0.0.1:9"}}]\n'
        "contexts: [{name: none, context: {cluster: none, user: none}}]\n"
        "users: [{name: none, user: {token: none}}]\n"
    )
    return path


def stop_api(server: ApiServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Iterator[ApiServer]:
    server = start_api(tmp_path_factory.mktemp("api"), inputs, ZYRA_SYNC_TIMEOUT_MAX_S="120")
    yield server
    stop_api(server)


@pytest.fixture
def client(api: ApiServer) -> Iterator[httpx.Client]:
    with api.client() as c:
        yield c


def store_of(server_env: dict[str, str], data_dir: Path) -> JobStore:
    """The API's own job store, opened from the test (as another process of the
    deployment would)."""
    url = server_env.get("ZYRA_REDIS_URL")
    return RedisJobStore(url) if url else SqliteJobStore(data_dir / "jobs.sqlite3")
