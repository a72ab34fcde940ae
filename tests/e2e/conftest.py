"""A real API server process on a free loopback port, and small inputs made here."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.services import free_port

API_KEY = "e2e-secret-key"


@dataclass
class ApiServer:
    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path

    def client(self, key: str | None = API_KEY, timeout: float = 120) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


def start_api(tmp: Path, inputs: Path, **env: str) -> ApiServer:
    port = free_port()
    data_dir = tmp / "data"
    log_path = tmp / "api.log"
    full_env = {
        **os.environ,
        "ZYRA_API_KEYS": f"e2e:{API_KEY}",
        "ZYRA_DATA_DIR": str(data_dir),
        "ZYRA_ALLOWED_PATH_PREFIXES": str(inputs),
        "ZYRA_PORT": str(port),
        **env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "api"], env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
    server = ApiServer(f"http://127.0.0.1:{port}", process, data_dir, log_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"API exited at start-up:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"API not ready in time:\n{log_path.read_text()}")


def stop_api(server: ApiServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny inputs for real Zyra commands, generated here, offline."""
    folder = tmp_path_factory.mktemp("inputs")
    np.save(folder / "field.npy", np.arange(24 * 48, dtype=float).reshape(24, 48))
    with (folder / "series.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["time", "value"])
        for day in range(1, 11):
            writer.writerow([f"2024-01-{day:02d}", day * day])
    write_grib2(folder / "t2m.grib2")
    (folder / "garbage.grib2").write_bytes(b"this is not a GRIB file\n" * 4)
    return folder


def write_grib2(path: Path, ni: int = 8, nj: int = 4) -> np.ndarray:
    """A GRIB2 field built from an eccodes sample; returns the values written."""
    import eccodes

    values = np.linspace(250.0, 300.0, ni * nj)
    handle = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
    try:
        for key, value in {
            "Ni": ni,
            "Nj": nj,
            "latitudeOfFirstGridPointInDegrees": 60.0,
            "longitudeOfFirstGridPointInDegrees": 0.0,
            "latitudeOfLastGridPointInDegrees": 30.0,
            "longitudeOfLastGridPointInDegrees": 70.0,
            "iDirectionIncrementInDegrees": 10.0,
            "jDirectionIncrementInDegrees": 10.0,
            "discipline": 0,
            "parameterCategory": 0,
            "parameterNumber": 0,
            "typeOfFirstFixedSurface": 103,
            "scaledValueOfFirstFixedSurface": 2,
        }.items():
            eccodes.codes_set(handle, key, value)
        eccodes.codes_set_values(handle, values)
        with path.open("wb") as f:
            eccodes.codes_write(handle, f)
    finally:
        eccodes.codes_release(handle)
    return values


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Iterator[ApiServer]:
    server = start_api(tmp_path_factory.mktemp("api"), inputs, ZYRA_SYNC_TIMEOUT_MAX_S="120")
    yield server
    stop_api(server)


@pytest.fixture
def client(api: ApiServer) -> Iterator[httpx.Client]:
    with api.client() as c:
        yield c


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a command
    fetching from it waits until something stops it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/never"
