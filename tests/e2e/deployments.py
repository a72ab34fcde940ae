"""One API on the embedded default, or two API processes sharing one Redis (each with
its own data dir and local runners): limits and fair shares must hold in both."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.e2e.conftest import ApiServer, start_api, stop_api
from tests.services import RedisServer

KINDS = ["embedded", "two-apis-on-redis"]
KEYS = {name: f"{name}-key-2f8c1a" for name in ("alice", "bob", "carol", "dave", "erin")}
API_KEYS = ",".join(f"{name}:{key}" for name, key in KEYS.items())


@dataclass
class Deployment:
    kind: str
    apis: list[ApiServer]

    def client(
        self, key: str | None, api: int = 0, source: str = "127.0.0.1", timeout: float = 120
    ) -> httpx.Client:
        """With API key `key` (None: no credential), through API process `api` (modulo
        how many there are), from loopback address `source` (per-address limits count
        what comes from one address: each test keeps to its own)."""
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(
            base_url=self.apis[api % len(self.apis)].url,
            headers=headers,
            timeout=timeout,
            transport=httpx.HTTPTransport(local_address=source),
        )


def start_deployment(kind: str, tmp: Path, inputs: Path, redis_url: str, **env: str) -> Deployment:
    env = {"ZYRA_API_KEYS": API_KEYS, **env}
    if kind == "embedded":
        return Deployment(kind, [start_api(tmp / "api", inputs, **env)])
    redis.Redis.from_url(redis_url).flushdb()  # a fresh database per deployment
    with ThreadPoolExecutor(2) as pool:
        starting = [pool.submit(start_api, tmp / name, inputs, ZYRA_REDIS_URL=redis_url, **env)
                    for name in ("a", "b")]  # fmt: skip
        return Deployment(kind, [s.result() for s in starting])


def stop_deployment(deployment: Deployment) -> None:
    for api in deployment.apis:
        stop_api(api)


def deployment_fixture(name: str, redis_db: int, **env: str) -> Callable[..., Iterator[Deployment]]:
    """A module's `deployment` fixture: each kind in turn, with `env`, on Redis database
    `redis_db` (a module of its own: modules run one after the other)."""

    @pytest.fixture(scope="module", params=KINDS)
    def deployment(
        request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory,
        inputs: Path,
        redis_server: RedisServer,
    ) -> Iterator[Deployment]:
        tmp = tmp_path_factory.mktemp(f"{name}-{request.param}")
        redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{redis_db}"
        started = start_deployment(request.param, tmp, inputs, redis_url, **env)
        yield started
        stop_deployment(started)

    return deployment
