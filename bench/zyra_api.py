"""Zyra's own bundled API (`zyra.api.server:app`), in a venv of its own, on loopback.

The venv holds the Zyra version constraints.txt pins, with the extras the bench's
commands need and Zyra's API extra, installed with the same constraints as this
project (so matplotlib, cfgrib, … are the versions the service runs). It is built
once and cached under `${ZYRA_TOOLS_CACHE:-~/.cache/zyra-orchestrator}/bench/`.

How it is run: `uvicorn zyra.api.server:app` (one process, as Zyra documents it) on
a free loopback port, with no `ZYRA_API_KEY`: Zyra then accepts requests without a
key. Its sync `POST /cli/run` runs the command inside the server process (a thread of
the request pool) and answers `{status, stdout, stderr, exit_code}`; a command's
output file is wherever its `output` argument points, so callers pass absolute paths.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.tables import REPO
from tests.services import free_port, wait_ready

CONSTRAINTS = REPO / "constraints.txt"
# Zyra's API extra plus the extras of the bench's commands (heatmap and time series:
# visualization; GRIB2 → NetCDF: processing, grib2, netcdf).
EXTRAS = "api,processing,visualization,grib2,netcdf"
# Zyra imports pydantic without declaring it; eccodes 2.40+ makes NetCDF-opening
# commands crash at interpreter exit (as in this project's pyproject.toml).
UNDECLARED = ["pydantic>=2.7,<3", "eccodes<2.40"]


def zyra_pin() -> str:
    for line in CONSTRAINTS.read_text().splitlines():
        if line.lower().startswith("zyra=="):
            return line.split("==", 1)[1].strip()
    raise RuntimeError(f"{CONSTRAINTS} pins no zyra version")


def requirements() -> list[str]:
    return [f"zyra[{EXTRAS}]=={zyra_pin()}", *UNDECLARED]


def venv_dir() -> Path:
    cache = Path(os.environ.get("ZYRA_TOOLS_CACHE") or Path.home() / ".cache/zyra-orchestrator")
    # The constraints are part of the key: another matplotlib would draw other bytes.
    key = hashlib.sha256("\n".join([*requirements(), CONSTRAINTS.read_text()]).encode())
    return cache / "bench" / f"zyra-api-{key.hexdigest()[:12]}"


def ensure_venv() -> Path:
    """The cached venv, built first if missing (a few minutes from PyPI)."""
    venv = venv_dir()
    if (venv / ".complete").exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    # Built beside its final place and renamed, so an interrupted build is never used.
    # (Renaming is safe as long as everything runs as `bin/python -m …`: only console
    # scripts name their interpreter by absolute path.)
    building = Path(tempfile.mkdtemp(prefix=venv.name + ".", dir=venv.parent))
    try:
        print(f"building Zyra's API venv {venv} (once, a few minutes) …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
        subprocess.run(
            [str(building / "bin" / "python"), "-m", "pip", "install", "-q",
             "--disable-pip-version-check", "-c", str(CONSTRAINTS), *requirements()],
            check=True,
        )  # fmt: skip
        (building / ".complete").write_text("\n".join(requirements()) + "\n")
        building.rename(venv)
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
        if not (venv / ".complete").exists():  # not another bench's build that won the race
            raise
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return venv


@dataclass
class ZyraApi:
    url: str
    process: subprocess.Popen[bytes]
    folder: Path
    log_path: Path

    def client(self, timeout: float = 300) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)


def clean_env() -> dict[str, str]:
    """An environment for Zyra's own processes: Zyra reads every `ZYRA_*` variable, and
    this project's settings share the prefix."""
    return {
        **{k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ},
        "ZYRA_SKIP_DOTENV": "1",  # no .env of the working directory's
    }


def start_zyra_api(folder: Path) -> ZyraApi:
    """Zyra's API on a free loopback port, its uploads, results and working directory
    under `folder`, in a clean environment."""
    python = ensure_venv() / "bin" / "python"
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **clean_env(),
        "PYTHONFAULTHANDLER": "1",  # a crash leaves its threads' tracebacks in the log
        "ZYRA_DATA_DIR": str(folder / "work"),  # where sync runs chdir for relative paths
        "ZYRA_UPLOAD_DIR": str(folder / "uploads"),
        "ZYRA_RESULTS_DIR": str(folder / "results"),
    }
    log_path = folder / "zyra-api.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(python), "-m", "uvicorn", "zyra.api.server:app", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = ZyraApi(f"http://127.0.0.1:{port}", process, folder, log_path)
    if wait_ready(f"{server.url}/health", process, log_path.read_text, timeout=120):
        return server
    process.kill()
    process.wait()
    raise RuntimeError(f"Zyra's API not ready in time:\n{log_path.read_text()}")


def stop_zyra_api(server: ZyraApi) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def zyra_version(venv: Path) -> str:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "from importlib.metadata import version; print(version('zyra'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


if __name__ == "__main__":
    # Build the venv, start the API, show what it answers, stop it.
    with tempfile.TemporaryDirectory(prefix="zyra-api-") as tmp:
        api = start_zyra_api(Path(tmp))
        try:
            with api.client() as client:
                print(client.get("/health").json())
        finally:
            stop_zyra_api(api)
