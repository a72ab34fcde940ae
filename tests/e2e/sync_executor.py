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
        """Processes it forked for commands (its children)."""
        assert self.process is not None
        pids: set[int] = set()
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            pids.update(int(p) for p in (task / "children").read_text().split())
        return pids
