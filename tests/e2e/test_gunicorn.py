"""The production image's server: its CMD (Gunicorn with Uvicorn workers, configured by
api/gunicorn_conf.py) and HEALTHCHECK, taken from Dockerfile.api and run as real processes
from this virtualenv."""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.deploy.dockerfiles import DOCKERFILE_API, REPO, Dockerfile
from tests.e2e.conftest import unreachable_kubeconfig
from tests.e2e.gunicorn_server import (
    GunicornServer,
    base_env,
    descendants_of,
    is_running,
    start_gunicorn,
)
from tests.e2e.sync_executor import command_pids
from tests.services import RedisServer, S3Server

API_IMAGE = Dockerfile.parse(DOCKERFILE_API)
CMD = API_IMAGE.exec_form("production", "CMD")
HEALTHCHECK = API_IMAGE.exec_form("production", "HEALTHCHECK")
WORKER_CLASS = runpy.run_path(str(REPO / "api" / "gunicorn_conf.py"))["worker_class"]
MAP_FLAGS = {"no_coastline": True, "no_borders": True, "no_gridlines": True}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def env_for(tmp: Path, inputs: Path | None = None, **extra: str) -> dict[str, str]:
    """As in the image: this virtualenv's bin first on PATH; fetches from loopback
    test servers (`silent_server`) allowed."""
    env = base_env(tmp / "data", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env["ZYRA_OUTBOUND_ALLOW"] = "127.0.0.1"
    if inputs is not None:
        env["ZYRA_ALLOWED_PATH_PREFIXES"] = str(inputs)
    return {**env, **extra}


def healthcheck(server: GunicornServer) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, with the port the server listens on."""
    port = server.url.rsplit(":", 1)[1]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "ZYRA_PORT": port}
    return subprocess.run(HEALTHCHECK, env=env, capture_output=True, text=True, timeout=30)


def test_local_backend_runs_one_worker_whatever_is_asked_and_says_why(
    tmp_path: Path, inputs: Path
) -> None:
    server = start_gunicorn(CMD, env_for(tmp_path, inputs, ZYRA_GUNICORN_WORKERS="3"), tmp_path)
    try:
        assert len(server.workers()) == 1
        assert (
            "[WARNING] ZYRA_GUNICORN_WORKERS=3 ignored: ZYRA_BACKEND=local runs a single worker"
            in server.stderr
        )
        assert f"Using worker: {WORKER_CLASS}" in server.stderr
        with server.client() as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            response = client.post(
                "/cli/run",
                json={"stage": "visualize", "command": "heatmap", "mode": "sync",
                      "args": {"input": str(inputs / "field.npy"), "output": "heat.png",
                               "width": 120, "height": 60, **MAP_FLAGS}},
            )  # fmt: skip
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["status"], body["exit_code"]) == ("succeeded", 0), body["stderr"]
            png = client.get(f"/jobs/{body['job_id']}/download").content
            assert png.startswith(PNG_MAGIC)
        assert '"GET /healthz HTTP/1.1" 200' in server.stdout  # the access log, on stdout
        assert '"GET /healthz HTTP/1.1"' not in server.stderr
        check = healthcheck(server)
        assert check.returncode == 0, check.stderr
    finally:
        server.stop()


def test_sigterm_stops_master_workers_and_commands_within_the_graceful_timeout(
    tmp_path: Path, inputs: Path, silent_server: str
) -> None:
    graceful_s = 6
    env = env_for(tmp_path, inputs, ZYRA_GUNICORN_GRACEFUL_TIMEOUT_S=str(graceful_s))
    server = start_gunicorn(CMD, env, tmp_path)
    answer: dict[str, object] = {}

    def hanging_sync_run() -> None:  # a fetch from a server that never answers
        try:
            with server.client() as client:
                answer["response"] = client.post(
                    "/cli/run",
                    json={"stage": "acquire", "command": "http", "mode": "sync",
                          "args": {"url": silent_server, "output": "x.bin"}, "timeout_s": 120},
                )  # fmt: skip
        except httpx.HTTPError as exc:
            answer["error"] = exc

    request = threading.Thread(target=hanging_sync_run)
    request.start()
    try:
        deadline = time.monotonic() + 30
        # Not a count of processes: the template keeps a spare child forked at idle.
        while not running_commands(tree := descendants_of(server.process.pid)):
            assert time.monotonic() < deadline, f"the command did not start: {tree}"
            time.sleep(0.1)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        returncode = server.process.wait(timeout=graceful_s + 30)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
        request.join(timeout=30)
    assert returncode == 0
    assert elapsed < graceful_s + 4, f"stopped after {elapsed:.1f}s"
    assert "Handling signal: term" in server.stderr
    assert "Shutting down: Master" in server.stderr
    deadline = time.monotonic() + 5
    while (left := [pid for pid in tree if is_running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], "processes outlived the master"
    # The sync run still in flight at the graceful timeout is cut off.
    assert isinstance(answer.get("error"), httpx.RemoteProtocolError), answer
    assert healthcheck(server).returncode != 0  # nothing answers any more


def running_commands(pids: set[int]) -> set[int]:
    """The commands the template processes among `pids` are running (not their spares)."""
    templates = [pid for pid in pids if b"runner.zygote" in _cmdline(pid)]
    return set().union(*(command_pids(pid) for pid in templates))


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_an_invalid_worker_count_stops_the_start_naming_the_variable(tmp_path: Path) -> None:
    program = Path(sys.executable).parent / CMD[0]
    done = subprocess.run(
        [str(program), *CMD[1:]],
        env=env_for(tmp_path, ZYRA_GUNICORN_WORKERS="lots"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "Error: ZYRA_GUNICORN_WORKERS='lots' is not a whole number"


def test_kubernetes_backend_runs_the_workers_asked_for(
    tmp_path: Path, redis_server: RedisServer, s3_server: S3Server
) -> None:
    """Several workers with the Redis job store. No cluster: the kubeconfig names a port
    nothing listens on, so each worker's Job watcher retries in the background."""
    kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
    env = env_for(
        tmp_path,
        ZYRA_BACKEND="kubernetes",
        ZYRA_REDIS_URL=redis_server.url,
        ZYRA_K8S__KUBECONFIG=str(kubeconfig),
        ZYRA_GUNICORN_WORKERS="3",
        **s3_server.api_env("gunicorn-workers"),
    )
    server = start_gunicorn(CMD, env, tmp_path)
    try:
        server.wait_for_workers(3)
        assert len(server.workers()) == 3
        assert "ZYRA_BACKEND=kubernetes: 3 worker(s)" in server.stderr
        assert "ignored" not in server.stderr
        for _ in range(12):  # fresh connections, spread over the workers by the kernel
            assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    finally:
        server.stop()


def test_query_api_keys_appear_in_no_log_line(tmp_path: Path) -> None:
    """Browsers pass `?api_key=` on the WebSocket; Gunicorn's access log (stdout) and
    the workers' WebSocket lines (stderr) show it redacted."""
    key = f"browser-{os.getpid()}-{time.time_ns()}"
    server = start_gunicorn(CMD, env_for(tmp_path, ZYRA_API_KEYS=f"browser:{key} read"), tmp_path)
    try:
        url = server.url.replace("http://", "ws://") + f"/ws/jobs/nope?api_key={key}"
        with connect(url, open_timeout=30) as ws:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=30)
            assert ws.close_code == 4404  # past authentication: the job does not exist
        assert httpx.get(f"{server.url}/jobs?api_key={key}").status_code == 401
    finally:
        server.stop()
    assert '"GET /jobs?api_key=[redacted] HTTP/1.1" 401' in server.stdout
    assert '"WebSocket /ws/jobs/nope?api_key=[redacted]" [accepted]' in server.stderr
    assert key not in server.stdout + server.stderr
