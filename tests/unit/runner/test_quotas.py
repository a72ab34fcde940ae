"""Per-job quotas, enforced by the executor on a real forked command.

The command is a small function standing in for Zyra in the forked child (as in
test_sandbox.py); the executor, its pipes and its kills are the real ones.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import runner.child
from runner.child import ChildRequest
from runner.execute import QUOTA_EXIT_CODE, CommandExecutor, ForkSpawner, RunOutcome
from runner.lifecycle import ExitReason
from runner.quotas import RunQuotas, disk_usage
from runner.sandbox import SandboxMode, SandboxPolicy, probe
from runner.workspace import JobFolders

KB = 1 << 10


def run_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command, quotas: RunQuotas
) -> tuple[RunOutcome, JobFolders]:
    monkeypatch.setattr(runner.child, "run_zyra", command)
    folders = JobFolders(tmp_path / "job")
    folders.create()
    policy = SandboxPolicy(mode=SandboxMode.REQUIRED)
    request = ChildRequest(
        argv=[],
        cwd=str(folders.files),
        env=folders.env(),
        sandbox=policy,
        writable=[str(p) for p in folders.writable],
    )
    executor = CommandExecutor(ForkSpawner(probe(policy)))
    outcome = executor.run(request, folders.capture, timeout_s=30, quotas=quotas)
    return outcome, folders


def prints_forever(argv: list[str]) -> int:
    while True:
        print("x" * 1000)


def writes_forever(argv: list[str]) -> int:
    with open("big.bin", "wb") as f:
        while True:
            f.write(b"\0" * 65536)


def binary_stdout_forever(argv: list[str]) -> int:
    while True:
        sys.stdout.buffer.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 65536)


def writes_many_files_quickly(argv: list[str]) -> int:
    for i in range(5):
        Path(f"part{i}.bin").write_bytes(b"\1" * (100 * KB))
    return 0


def modest(argv: list[str]) -> int:
    print("a line")
    Path("out.txt").write_text("result")
    return 0


def test_printing_past_the_log_limit_ends_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    outcome, _ = run_with(
        tmp_path, monkeypatch, prints_forever, RunQuotas(log_bytes=200 * KB, disk_bytes=None)
    )
    assert (outcome.exit_code, outcome.reason) == (QUOTA_EXIT_CODE, ExitReason.LOG_LIMIT)
    assert os.path.getsize(outcome.stdout_path) <= 200 * KB
    assert time.monotonic() - started < 10


def test_filling_the_disk_ends_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, _ = run_with(
        tmp_path, monkeypatch, writes_forever, RunQuotas(log_bytes=None, disk_bytes=1 << 20)
    )
    assert (outcome.exit_code, outcome.reason) == (QUOTA_EXIT_CODE, ExitReason.DISK_QUOTA)


def test_binary_stdout_counts_as_disk_not_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome, _ = run_with(
        tmp_path,
        monkeypatch,
        binary_stdout_forever,
        RunQuotas(log_bytes=1 << 30, disk_bytes=1 << 20),
    )
    assert outcome.reason is ExitReason.DISK_QUOTA
    assert os.path.getsize(outcome.stdout_path) <= 1 << 20


def test_what_was_written_in_the_last_moment_still_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Done faster than one check interval, but 500 KB over a 300 KB quota."""
    outcome, _ = run_with(
        tmp_path,
        monkeypatch,
        writes_many_files_quickly,
        RunQuotas(log_bytes=None, disk_bytes=300 * KB),
    )
    assert (outcome.exit_code, outcome.reason) == (QUOTA_EXIT_CODE, ExitReason.DISK_QUOTA)


def test_within_its_quotas_a_command_is_not_disturbed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome, folders = run_with(
        tmp_path, monkeypatch, modest, RunQuotas(log_bytes=KB, disk_bytes=KB)
    )
    assert (outcome.exit_code, outcome.reason) == (0, ExitReason.COMPLETED)
    assert outcome.stdout_path.read_text() == "a line\n"
    assert (folders.files / "out.txt").read_text() == "result"


def test_disk_usage_counts_files_beneath_and_not_what_links_point_to(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"1" * 1000)
    (tmp_path / "g").write_bytes(b"1" * 24)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.write_bytes(b"1" * 10_000)
    (tmp_path / "link").symlink_to(outside)
    assert disk_usage([str(tmp_path), str(tmp_path / "missing")]) == 1024
    outside.unlink()
