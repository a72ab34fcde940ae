"""scripts/start-api.sh, run for real: the dev container's command and its postStartCommand.

Each test runs the script from a folder outside the checkout, with this venv first on PATH (as
the dev image has /opt/venv), its own data dir and a free port. "No process left" means no live
process in the server's session: the script starts the background server with setsid, and the
foreground one is started here in a new session, so the zygote and everything else the API
starts shares it (a command's own session exists only while a job runs; none runs here).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.services import free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "start-api.sh"
API_KEY = "start-script-key"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ZYRA_")}
    base.pop("PYTHON", None)
    return {
        **base,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",
        "ZYRA_DATA_DIR": str(tmp_path / "data"),
        "ZYRA_PORT": str(free_port()),
        "ZYRA_API_KEYS": f"test:{API_KEY}",
    }


def url(env: dict[str, str], path: str = "/healthz") -> str:
    return f"http://127.0.0.1:{env['ZYRA_PORT']}{path}"


def answers(env: dict[str, str]) -> bool:
    try:
        return httpx.get(url(env), timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def session_processes(sid: int) -> list[int]:
    """Live (not zombie) processes of session `sid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(entry.name))
    return found


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ").strip()


def wait_until(condition, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def script(
    env: dict[str, str], cwd: Path, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def pid_file(env: dict[str, str]) -> Path:
    return Path(env["ZYRA_DATA_DIR"]) / "api.pid"


@pytest.fixture
def stopped(env: dict[str, str], tmp_path: Path) -> Iterator[None]:
    """Whatever a test leaves running in the background is stopped afterwards."""
    yield
    if pid_file(env).exists():
        pid = int(pid_file(env).read_text())
        script(env, tmp_path, "--stop")
        for leftover in session_processes(pid):
            os.kill(leftover, signal.SIGKILL)


def test_foreground_serves_until_sigterm_and_leaves_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    log = (tmp_path / "fg.log").open("wb")
    server = subprocess.Popen(
        [str(SCRIPT)], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_until(lambda: answers(env) or server.poll() is not None, 120)
        assert server.poll() is None, (tmp_path / "fg.log").read_text()
        # The script exec'd the server: the process started here is the server itself.
        assert cmdline(server.pid).endswith(" -m api")
        headers = {"X-API-Key": API_KEY}
        assert httpx.get(url(env, "/cli/commands"), headers=headers).status_code == 200
        assert httpx.get(url(env, "/cli/commands")).status_code == 401
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert server.wait(timeout=10) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 10
        assert "Application shutdown complete" in (tmp_path / "fg.log").read_text()
        assert wait_until(lambda: session_processes(server.pid) == [], 5), session_processes(
            server.pid
        )
        assert not answers(env)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_background_starts_once_and_stops(env: dict[str, str], tmp_path: Path, stopped) -> None:
    started = script(env, tmp_path, "--background")
    assert started.returncode == 0, started.stdout + started.stderr
    log = Path(env["ZYRA_DATA_DIR"]) / "api.log"
    assert url(env, "") in started.stdout and str(log) in started.stdout
    # Healthy when the script returns, and the pid file names the live server.
    assert httpx.get(url(env)).status_code == 200
    pid = int(pid_file(env).read_text())
    assert cmdline(pid).endswith(" -m api")
    assert "Application startup complete" in log.read_text()

    again = script(env, tmp_path, "--background")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout
    assert int(pid_file(env).read_text()) == pid
    servers = [p for p in session_processes(pid) if cmdline(p).endswith(" -m api")]
    assert servers == [pid], "a second server was started"

    stop = script(env, tmp_path, "--stop")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert f"stopped pid {pid}" in stop.stdout
    assert session_processes(pid) == []
    assert not pid_file(env).exists()
    assert not answers(env)
    assert "Application shutdown complete" in log.read_text()  # a graceful stop

    idle = script(env, tmp_path, "--stop")
    assert (idle.returncode, idle.stdout.strip()) == (0, "start-api: not running")


def test_background_does_not_start_a_second_server_where_one_answers(
    env: dict[str, str], tmp_path: Path, stopped
) -> None:
    """E.g. the container's own command already serves: postStartCommand leaves it alone."""
    first = script(env, tmp_path, "--background")
    assert first.returncode == 0, first.stdout + first.stderr
    pid = int(pid_file(env).read_text())
    pid_file(env).unlink()  # as if another starter owned it
    second = script(env, tmp_path, "--background")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "already answers" in second.stdout
    assert not pid_file(env).exists()
    pid_file(env).write_text(f"{pid}\n")  # for the clean-up


def test_a_stale_pid_file_does_not_count_as_running(
    env: dict[str, str], tmp_path: Path, stopped
) -> None:
    pid_file(env).parent.mkdir(parents=True)
    pid_file(env).write_text(f"{os.getpid()}\n")  # alive, but not the API: a recycled pid
    started = script(env, tmp_path, "--background")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "already running" not in started.stdout
    assert int(pid_file(env).read_text()) != os.getpid()
    assert answers(env)


def test_background_fails_with_the_log_tail_when_the_port_is_taken(
    env: dict[str, str], tmp_path: Path, stopped
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["ZYRA_PORT"])))
        squatter.listen(1)  # accepts connections, never answers HTTP
        failed = script(env, tmp_path, "--background")
    assert failed.returncode != 0
    assert "exited before answering" in failed.stdout
    assert "last lines of" in failed.stdout
    assert "address already in use" in failed.stdout.lower()  # the server's own error, tailed
    assert not pid_file(env).exists()


def test_background_gives_up_after_the_start_timeout(
    env: dict[str, str], tmp_path: Path, stopped
) -> None:
    env = {**env, "ZYRA_START_TIMEOUT_S": "1"}  # the app's start-up takes longer than that
    began = time.monotonic()
    failed = script(env, tmp_path, "--background")
    assert failed.returncode != 0
    assert "within 1s" in failed.stdout and "last lines of" in failed.stdout
    assert time.monotonic() - began < 60
    assert not pid_file(env).exists()
    assert not answers(env)


def test_reload_mode_serves_and_stops_with_its_worker(
    env: dict[str, str], tmp_path: Path, stopped
) -> None:
    env = {**env, "ZYRA_RELOAD": "true"}
    started = script(env, tmp_path, "--background")
    assert started.returncode == 0, started.stdout + started.stderr
    pid = int(pid_file(env).read_text())
    argv = cmdline(pid).split()
    assert argv[1:5] == ["-m", "uvicorn", "--factory", "api.server:create_app"]
    assert "--reload" in argv
    headers = {"X-API-Key": API_KEY}
    assert httpx.get(url(env, "/cli/commands"), headers=headers).status_code == 200
    assert len(session_processes(pid)) >= 2  # the reloader and its worker (and the zygote)
    stop = script(env, tmp_path, "--stop")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert wait_until(lambda: session_processes(pid) == [], 5), session_processes(pid)
