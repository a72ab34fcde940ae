"""Several template processes of the API's own, so that forking keeps up with many cores.

One template process forks every sync child and warm runner of its API process; each
fork and hand-over costs it ~7 ms of CPU (bench/sync_cpu.py), so one keeps up with 100
or more runs a second, a machine of 8 or more busy cores. `ZYRA_TEMPLATE_PROCESSES`
starts more; each request goes to the one with the fewest commands and runners in hand.
Each holds its own copy of Zyra's stack (a few hundred MB).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from runner.child import ChildRequest
from runner.execute import Zygote
from runner.sandbox import SandboxReport
from runner.warm_runner import RunnerRequest

CPUS_PER_TEMPLATE = 8


def default_size() -> int:
    """One template process per 8 CPUs, at least one."""
    return max(1, (os.cpu_count() or 1) // CPUS_PER_TEMPLATE)


class TemplatePool:
    """Zygote's interface over several template processes (never a sync executor's
    socket: that executor is one process, shared by every API replica)."""

    def __init__(self, templates: list[Zygote]) -> None:
        if not templates:
            raise ValueError("a pool needs at least one template process")
        self.templates = templates
        # Requests being handed over, by template: `busy` counts one only once its
        # template has it, so two requests at once would both see the same one idle.
        self._handing = [0] * len(templates)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start them side by side (each warms up for seconds); raises the first failure."""
        with ThreadPoolExecutor(len(self.templates)) as pool:
            for started in [pool.submit(t.start) for t in self.templates]:
                started.result()

    @property
    def sandbox(self) -> SandboxReport | None:
        return self.templates[0].sandbox  # the same policy, the same machine: one answer

    def unavailable(self) -> str | None:
        return next((why for t in self.templates if (why := t.unavailable())), None)

    @contextlib.contextmanager
    def _least_busy(self) -> Iterator[Zygote]:
        """The template with the fewest in hand, counting those being handed over."""
        with self._lock:
            i = min(range(len(self.templates)),
                    key=lambda k: self.templates[k].busy + self._handing[k])  # fmt: skip
            self._handing[i] += 1
        try:
            yield self.templates[i]
        finally:
            with self._lock:
                self._handing[i] -= 1

    def spawn(
        self, request: ChildRequest, stdout_fd: int, stderr_fd: int
    ) -> tuple[int, Future[int]]:
        with self._least_busy() as template:
            return template.spawn(request, stdout_fd, stderr_fd)

    @property
    def starts_runners(self) -> bool:
        return all(t.starts_runners for t in self.templates)

    def spawn_runner(self, request: RunnerRequest, log_fd: int) -> tuple[int, Future[int]]:
        with self._least_busy() as template:
            return template.spawn_runner(request, log_fd)

    def kill(self, pid: int, sig: int) -> None:
        for template in self.templates:  # only the one that forked `pid` acts on it
            template.kill(pid, sig)

    def close(self) -> None:
        for template in self.templates:
            template.close()
