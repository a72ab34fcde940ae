"""A sync executor process (`python -m runner.zygote --listen`) as the chart runs it in
the API pod's second container: its own environment, which holds no secret."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SyncExecutor:
    socket: Path
    log_path: Path
    sandbox: str = "required"
    preexec_fn: Callable[[], None] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def env(self) -> dict[str, str]:
        """All of its environment, as the chart's container gets it: no Secret."""
        home = self.socket.parent / "home"
        home.mkdir(parents=True, exist_ok=True)
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(home / "matplotlib"),
            "ZYRA_SANDBOX": self.sandbox,
        }

    def start(self, wait: bool = True, timeout: float = 120) -> None:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "runner.zygote", "--listen", str(self.socket)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.socket.parent,
                preexec_fn=self.preexec_fn,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while wait and not self.socket.is_socket():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sync executor did not start:\n{self.log_path.read_text()}")
            time.sleep(0.1)

    def stop(self, kill: bool = False) -> int:
        assert self.process is not None
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def command_pids(self) -> set[int]:
        """Processes running its commands."""
        assert self.process is not None
        return command_pids(self.process.pid)


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(p) for p in (task / "children").read_text().split())
    return found


def command_pids(template_pid: int) -> set[int]:
    """Children of a template process that run a command: each in a session of its own
    (the spare forked ahead for the next command has not made one yet)."""
    return {pid for pid in children(template_pid) if _session_of(pid) == pid}


def _session_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[3])  # state, ppid, pgrp, session
