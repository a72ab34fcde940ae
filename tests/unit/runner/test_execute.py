"""A command forked by a runner (ForkSpawner): its exit code comes as soon as its output
is complete, and by then nothing it started is left running, confined or not."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

import runner.child
from runner.execute import CommandExecutor, ForkSpawner
from runner.reaper import children
from runner.sandbox import SandboxMode, SandboxPolicy, probe
from runner.workspace import JobFolders


def leaving_a_daemon(argv: list[str]) -> int:
    """Stands in for Zyra: starts a daemon (its own session, stdio closed, its parent
    gone) that would run for a minute, prints its pid and returns at once."""
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(write_end, str(os.getpid()).encode())
            for fd in (0, 1, 2, read_end, write_end):
                os.close(fd)
            time.sleep(60)
        os._exit(0)
    os.close(write_end)
    print(os.read(read_end, 32).decode(), flush=True)
    return 0


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.parametrize("mode", [SandboxMode.OFF, SandboxMode.BEST_EFFORT])
@pytest.mark.parametrize("early", [True, False], ids=["early report", "after exit"])
def test_nothing_a_command_started_runs_on_once_its_exit_is_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: SandboxMode, early: bool
) -> None:
    monkeypatch.setattr(runner.child, "run_zyra", leaving_a_daemon)
    folders = JobFolders(tmp_path / "job")
    folders.create()
    policy = SandboxPolicy(mode=mode)
    report = probe(policy)
    folders.hand_over(report)
    request = folders.child_request(["x"], {"PATH": "/usr/bin:/bin"}, sandbox=policy)
    ours = set(children())
    spawner = ForkSpawner(report, early_report=early)
    outcome = CommandExecutor(spawner).run(request, folders.capture, timeout_s=30)
    assert outcome.exit_code == 0, outcome.stderr_path.read_text()
    daemon = int(outcome.stdout_path.read_text())
    try:
        assert not _running(daemon), "the command's daemon outlived its exit report"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signal.SIGKILL)
        # An early report leaves the wait for the command's process to the background,
        # whose backstop would kill what the next test forks.
        deadline = time.monotonic() + 30
        while set(children()) - ours and time.monotonic() < deadline:
            time.sleep(0.01)
