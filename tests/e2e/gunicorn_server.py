"""A real Gunicorn master running the API on a free loopback port, and its process tree."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.conftest import API_KEY
from tests.services import free_port, wait_ready


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: state, ppid, …; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def is_running(pid: int) -> bool:
    """Alive and not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def children_of(pid: int) -> list[int]:
    return sorted(
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and parent_of(int(entry.name)) == pid
    )


def descendants_of(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children_of(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@dataclass
class GunicornServer:
    url: str
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def client(self, key: str | None = API_KEY, timeout: float = 120) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def workers(self) -> list[int]:
        """The master's child processes: its workers."""
        return children_of(self.process.pid)

    def wait_for_workers(self, count: int, timeout: float = 120) -> None:
        """Until `count` workers have each started the app (readiness needs only one)."""
        deadline = time.monotonic() + timeout
        while self.stderr.count("Application startup complete") < count:
            assert time.monotonic() < deadline, self.stderr
            time.sleep(0.2)

    def stop(self, timeout: float = 60) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_gunicorn(
    argv: list[str], env: dict[str, str], folder: Path, ready_timeout: float = 120
) -> GunicornServer:
    """Start `argv` (a Gunicorn command line; argv[0] looked up on env's PATH) in
    `folder`, bound to a free loopback port; return once GET /readyz answers 200."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    program = shutil.which(argv[0], path=env.get("PATH"))
    assert program, f"{argv[0]} is not on PATH={env.get('PATH')}"
    full_env = {**env, "ZYRA_HOST": "127.0.0.1", "ZYRA_PORT": str(port)}
    stdout_path, stderr_path = folder / "gunicorn.out", folder / "gunicorn.err"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [program, *argv[1:]], env=full_env, cwd=folder, stdout=out, stderr=err
        )
    server = GunicornServer(f"http://127.0.0.1:{port}", process, stdout_path, stderr_path)
    if wait_ready(f"{server.url}/readyz", process, lambda: server.stderr, ready_timeout):
        return server
    server.stop()
    raise RuntimeError(f"gunicorn not ready in {ready_timeout}s:\n{server.stderr}")


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This machine's environment minus any ZYRA_* and Gunicorn settings of its own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ZYRA_", "GUNICORN_")) and k != "WEB_CONCURRENCY"
    }
    return {
        **env,
        "ZYRA_API_KEYS": f"e2e:{API_KEY}",
        "ZYRA_DATA_DIR": str(data_dir),
        **extra,
    }
