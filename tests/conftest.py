"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from runner.catalog import CommandCatalog
from runner.samples import write_grib2, write_series
from tests.oidc import LoopbackIssuer
from tests.project_images import (  # noqa: F401  (a hook and a fixture, found by name)
    image_tarballs,
    pytest_collection_finish,
    pytest_terminal_summary,
)
from tests.services import RedisServer, S3Server

# `make test` runs the suite on every CPU (pytest-xdist). Tests that share something of
# the whole machine run one after another on one worker: the real cluster and podman's
# containers (tests/k8s checks the machine's mounts, links and iptables are as it found
# them), and n8n (one server per session, ~600 MB, 10 s to start). Every other test
# goes to whichever worker is free.
SERIAL_GROUPS = {
    "tests/k8s/": "machine",
    "tests/deploy/test_images.py": "machine",
    "tests/n8n/": "n8n",
    "tests/n8n_node/": "n8n",
}


def serial_group(nodeid: str) -> str | None:
    return next((g for prefix, g in SERIAL_GROUPS.items() if nodeid.startswith(prefix)), None)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    # xdist's own `--dist loadgroup` reads marks into node ids in a way pytest 9.2 no
    # longer honours; a scope per serial group (else per test) does the same.
    from xdist.scheduler import LoadScopeScheduling

    class SerialGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return serial_group(nodeid) or nodeid

    return SerialGroupScheduling(config, log)


@pytest.fixture(autouse=True)
def _umask_left_as_found() -> Iterator[None]:
    # An in-process API (create_app's lifespan) sets umask 077 for the whole test
    # process; what the next test starts (a cluster, a server) must not inherit it.
    found = os.umask(0o022)
    os.umask(found)
    yield
    os.umask(found)


@pytest.fixture(scope="session")
def catalog() -> CommandCatalog:
    return CommandCatalog.from_zyra()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, for tests that stop it or restart it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def issuer() -> Iterator[LoopbackIssuer]:
    """An OAuth2 issuer on loopback with an RSA and an EC signing key (one per module:
    tests rotate its keys)."""
    issuer = LoopbackIssuer()
    issuer.add_key("rsa-1", "rsa")
    issuer.add_key("ec-1", "ec")
    issuer.start()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("minio"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny inputs for real Zyra commands, generated here, offline."""
    folder = tmp_path_factory.mktemp("inputs")
    np.save(folder / "field.npy", np.arange(24 * 48, dtype=float).reshape(24, 48))
    write_series(folder / "series.csv")
    write_grib2(folder / "t2m.grib2")
    (folder / "garbage.grib2").write_bytes(b"this is not a GRIB file\n" * 4)
    return folder


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a command
    fetching from it waits until something stops it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/never"
