"""`kubectl port-forward svc/<name>` on a fixed local port, started again whenever it
exits: kubectl forwards to one pod of the Service, and ends when that pod goes (an API
pod deleted, a rollout). The local URL stays the same; an operator would type the same
command again."""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from tests.k8s.e2e.kubectl import Kubectl
from tests.services import free_port


class PortForward:
    def __init__(self, kubectl: Kubectl, target: str, remote_port: int, log: Path) -> None:
        self.kubectl, self.target, self.remote_port, self.log = kubectl, target, remote_port, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _supervise(self) -> None:
        with self.log.open("ab") as out:
            while not self._stop.is_set():
                self.starts += 1
                out.write(f"--- start {self.starts} at {time.strftime('%H:%M:%S')}\n".encode())
                out.flush()
                process = subprocess.Popen(
                    self.kubectl.argv("port-forward", "--address", "127.0.0.1", self.target,
                                      f"{self.port}:{self.remote_port}"),
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
                while process.poll() is None and not self._stop.is_set():
                    time.sleep(0.1)
                if process.poll() is None:  # stopping
                    process.terminate()
                    try:
                        process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
                self._stop.wait(0.5)  # the Service has no ready pod yet: do not spin

    def wait_answering(self, path: str = "/healthz", timeout: float = 120) -> None:
        """Until GET <path> through the forward answers 200."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + path, timeout=5) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"no 200 from {self.url}{path} in {timeout}s; "
                                   f"kubectl port-forward said:\n{self.output()}")  # fmt: skip
            time.sleep(0.3)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
