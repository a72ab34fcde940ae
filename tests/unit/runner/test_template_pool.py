"""Several template processes (ZYRA_TEMPLATE_PROCESSES): commands go to the least busy,
are signalled through the one that forked them, and runners fork there too."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from runner.child import ChildRequest
from runner.execute import CommandExecutor, RunOutcome, Zygote
from runner.lifecycle import ExitReason
from runner.sandbox import SandboxMode, SandboxPolicy
from runner.template_pool import TemplatePool, default_size
from runner.workspace import JobFolders
from tests.e2e.sync_executor import command_pids

OFF = SandboxPolicy(mode=SandboxMode.OFF)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemplatePool]:
    home = tmp_path_factory.mktemp("home")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "MPLBACKEND": "Agg"}
    templates = TemplatePool([Zygote(env, OFF), Zygote(env, OFF)])
    templates.start()
    yield templates
    templates.close()


def _template_pids(pool: TemplatePool) -> list[int]:
    pids = [t._proc.pid for t in pool.templates if t._proc is not None]
    assert len(pids) == 2
    return pids


def _waiting_fetch(folder: Path, url: str) -> tuple[JobFolders, ChildRequest]:
    folders = JobFolders(folder)
    folders.create()
    return folders, folders.child_request(["acquire", "http", url, "-o", "out.bin"], {},
                                          sandbox=OFF)  # fmt: skip


def test_commands_at_once_are_forked_by_different_templates_and_stopped_through_them(
    pool: TemplatePool, tmp_path: Path, silent_server: str
) -> None:
    outcomes: list[Future[RunOutcome]] = [Future(), Future()]
    cancels = [threading.Event(), threading.Event()]

    def run(i: int) -> None:
        folders, request = _waiting_fetch(tmp_path / f"job{i}", silent_server)
        outcome = CommandExecutor(pool, kill_grace_s=1).run(
            request, folders.capture, timeout_s=60, cancel=cancels[i]
        )
        outcomes[i].set_result(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    first, second = _template_pids(pool)
    deadline = threading.Event()
    for _ in range(1000):  # both commands are running, one in each template
        if command_pids(first) and command_pids(second):
            break
        deadline.wait(0.01)
    assert len(command_pids(first)) == 1 and len(command_pids(second)) == 1
    for cancel in cancels:  # the executor signals the group through the pool
        cancel.set()
    for thread in threads:
        thread.join(30)
    ended = {(o.result(timeout=1).exit_code, o.result().reason) for o in outcomes}
    assert ended == {(128 + signal.SIGTERM, ExitReason.CANCELLED)}
    assert not command_pids(first) and not command_pids(second)


def test_a_pool_says_what_its_templates_found(pool: TemplatePool) -> None:
    assert pool.sandbox is not None and pool.sandbox.mode is SandboxMode.OFF
    assert pool.unavailable() is None and pool.starts_runners


def test_the_default_is_one_template_per_eight_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    for cpus, size in ((1, 1), (2, 1), (8, 1), (16, 2), (64, 8)):
        monkeypatch.setattr(os, "cpu_count", lambda cpus=cpus: cpus)
        assert default_size() == size


def test_requests_at_the_same_moment_go_to_different_templates() -> None:
    """Each is counted from the moment its template is chosen, not once it has it."""
    chosen: list[int] = []
    both_choosing = threading.Barrier(2)

    class Slow:
        """A template that takes its time to register a request, as a busy one does."""

        def __init__(self, n: int) -> None:
            self.n, self.busy = n, 0

        def spawn(self, *_: object) -> tuple[int, Future[int]]:
            chosen.append(self.n)
            both_choosing.wait(5)  # the other request is choosing meanwhile
            return self.n, Future()

    templates = TemplatePool([Slow(0), Slow(1)])  # type: ignore[list-item]
    threads = [threading.Thread(target=templates.spawn, args=(None, 1, 2)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(chosen) == [0, 1]
