"""The kernel confines a command: what it may read, write, run and signal.

Each test forks a real command process the way a runner does (CommandExecutor with
a ForkSpawner), with the sandbox applied exactly as for Zyra; only the command
itself is a small function that tries things and prints what happened. These
tests need Landlock, which the CI machines have (ABI 7): without it they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import runner.child
from runner import landlock
from runner.child import ChildRequest
from runner.execute import CommandExecutor, ForkSpawner
from runner.sandbox import (
    SANDBOX_EXIT_CODE,
    SandboxMode,
    SandboxPolicy,
    SandboxReport,
    probe,
    read_paths,
)
from runner.workspace import JobFolders

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")


def attempt(action: str, target: str) -> str:
    """Try one thing; 'ok' or the error's name."""
    try:
        if action == "read":
            Path(target).read_bytes()
        elif action == "write":
            Path(target).write_text("planted")
        elif action == "list":
            os.listdir(target)
        elif action == "exec":
            os.execv(target, [target])  # replaces the process only when allowed
        elif action == "signal":
            os.kill(int(target), 0)
        elif action == "chown":
            os.chown(target, 1234, 1234)
        return "ok"
    except OSError as exc:
        return type(exc).__name__


def trying_command(argv: list[str]) -> int:
    """Stands in for Zyra in the forked child: argv is a JSON list of [action, target]."""
    results = {f"{a} {t}": attempt(a, t) for a, t in json.loads(argv[0])}
    results["uid"] = str(os.getuid())
    results["groups"] = str(os.getgroups())
    print(json.dumps(results))
    return 0


@pytest.fixture
def job(tmp_path: Path) -> JobFolders:
    folders = JobFolders(tmp_path / "work" / "job-1")
    folders.create()
    (folders.files / "input.txt").write_text("mine")
    return folders


@pytest.fixture
def service_files(tmp_path: Path) -> dict[str, Path]:
    """What a data dir holds: the job store, a key file, another job's folder."""
    data = tmp_path / "data"
    other = JobFolders(tmp_path / "work" / "job-2")
    other.create()
    (other.files / "secret-result.nc").write_text("theirs")
    data.mkdir()
    (data / "jobs.sqlite3").write_text("every caller's records")
    (data / "api-keys").write_text("alice:key")
    return {"store": data / "jobs.sqlite3", "keys": data / "api-keys",
            "other_job": other.files / "secret-result.nc", "data": data}  # fmt: skip


def run_trying(
    job: JobFolders,
    actions: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
    policy: SandboxPolicy,
    report: SandboxReport | None = None,
) -> tuple[int, dict[str, str], str]:
    monkeypatch.setattr(runner.child, "run_zyra", trying_command)
    report = report or probe(policy)
    job.hand_over(report)
    request = ChildRequest(
        argv=[json.dumps(actions)],
        cwd=str(job.files),
        env={"PATH": "/usr/bin:/bin", **job.env()},
        sandbox=policy,
        writable=[str(p) for p in job.writable],
    )
    outcome = CommandExecutor(ForkSpawner(report)).run(request, job.capture, timeout_s=30)
    stdout = outcome.stdout_path.read_text()
    stderr = outcome.stderr_path.read_text()
    results = json.loads(stdout) if stdout.strip() else {}
    return outcome.exit_code, results, stderr


def test_this_machine_offers_landlock() -> None:
    report = probe(SandboxPolicy())
    assert landlock.abi_version() >= 6, "CI machines have Landlock ABI 6 or later"
    assert report.filesystem and report.scoped and report.level == "full"
    assert report.meets_required


def test_a_command_reaches_its_own_folders_and_nothing_of_the_service(
    job: JobFolders,
    service_files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    policy = SandboxPolicy(mode=SandboxMode.REQUIRED, private_paths=[str(service_files["data"])])
    site_packages = next(p for p in sys.path if p.endswith("site-packages"))
    actions = [
        ["read", str(job.files / "input.txt")],
        ["write", str(job.files / "output.txt")],
        ["write", str(job.tmp / "scratch")],
        ["read", str(service_files["store"])],
        ["read", str(service_files["keys"])],
        ["read", str(service_files["other_job"])],
        ["list", str(service_files["data"])],
        ["write", str(Path(site_packages) / "planted.pth")],
        ["write", str(tmp_path / "outside.txt")],
        ["read", f"/proc/{os.getpid()}/environ"],
        ["read", "/proc/1/environ"],
        ["read", "/etc/ssl/certs/ca-certificates.crt"],
        ["signal", str(os.getpid())],
    ]
    code, seen, stderr = run_trying(job, actions, monkeypatch, policy)
    assert code == 0, stderr
    allowed = {"read " + str(job.files / "input.txt"), "write " + str(job.files / "output.txt"),
               "write " + str(job.tmp / "scratch"),
               "read /etc/ssl/certs/ca-certificates.crt"}  # fmt: skip
    for action, target in actions:
        key = f"{action} {target}"
        if key in allowed:
            assert seen[key] == "ok", key
        else:
            assert seen[key] in ("PermissionError", "ProcessLookupError"), (key, seen[key])
    assert not (Path(site_packages) / "planted.pth").exists()
    assert not (tmp_path / "outside.txt").exists()
    assert (job.files / "output.txt").read_text() == "planted"


def test_read_paths_are_readable_not_writable_and_nothing_written_runs(
    job: JobFolders, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-data"
    shared.mkdir()
    (shared / "field.csv").write_text("a,b\n")
    script = job.files / "tool.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o755)
    policy = SandboxPolicy(mode=SandboxMode.REQUIRED, read_paths=[str(shared)])
    code, seen, stderr = run_trying(
        job,
        [
            ["read", str(shared / "field.csv")],
            ["write", str(shared / "field.csv")],
            ["exec", str(script)],
        ],
        monkeypatch,
        policy,
    )
    assert code == 0, stderr
    assert seen[f"read {shared / 'field.csv'}"] == "ok"
    assert seen[f"write {shared / 'field.csv'}"] == "PermissionError"
    assert seen[f"exec {script}"] == "PermissionError"
    assert (shared / "field.csv").read_text() == "a,b\n"


def test_with_the_sandbox_off_the_same_command_reaches_everything(
    job: JobFolders, service_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counterpart of the tests above: they fail if the sandbox does nothing."""
    code, seen, _ = run_trying(
        job, [["read", str(service_files["keys"])]], monkeypatch, SandboxPolicy(mode="off")
    )
    assert code == 0
    assert seen[f"read {service_files['keys']}"] == "ok"


@pytest.fixture
def passable_job() -> Iterator[JobFolders]:
    """A job under folders another uid may pass through, as the service makes its data
    dir when commands drop to an unprivileged uid (pytest's own tmp is 0700)."""
    top = Path(tempfile.mkdtemp(prefix="zyra-sandbox-"))
    top.chmod(0o711)
    folders = JobFolders(top / "job-1")
    folders.create()
    yield folders
    shutil.rmtree(top)


@ROOT_ONLY
def test_started_as_root_a_command_runs_as_the_unprivileged_uid(
    passable_job: JobFolders, service_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = passable_job
    policy = SandboxPolicy(mode=SandboxMode.REQUIRED, uid=65534, gid=65534)
    report = probe(policy).model_copy(
        update={
            "drop_to_uid": 65534,
            "drop_to_gid": 65534,
            "drop_capabilities": False,
            "identity": "uid 65534",
        }
    )
    # Its folders are handed over to it; the service's stay root's.
    os.chmod(service_files["data"], 0o711)
    code, seen, stderr = run_trying(
        job,
        [["write", str(job.files / "out.txt")], ["read", str(service_files["keys"])]],
        monkeypatch,
        policy,
        report,
    )
    assert code == 0, stderr
    assert seen["uid"] == "65534" and seen["groups"] == "[]"
    assert seen[f"write {job.files / 'out.txt'}"] == "ok"
    assert seen[f"read {service_files['keys']}"] == "PermissionError"
    assert (job.files / "out.txt").stat().st_uid == 65534
    assert stat.S_IMODE(job.root.stat().st_mode) == 0o711


@ROOT_ONLY
def test_a_command_kept_as_uid_0_has_no_capabilities(
    job: JobFolders, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = SandboxPolicy(mode=SandboxMode.REQUIRED)
    report = probe(policy).model_copy(
        update={
            "drop_to_uid": None,
            "drop_capabilities": True,
            "identity": "uid 0 without capabilities",
        }
    )
    code, seen, stderr = run_trying(
        job, [["chown", str(job.files / "input.txt")]], monkeypatch, policy, report
    )
    assert code == 0, stderr
    assert seen["uid"] == "0"
    assert seen[f"chown {job.files / 'input.txt'}"] == "PermissionError"


def test_required_without_landlock_runs_nothing(
    job: JobFolders, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = SandboxPolicy(mode=SandboxMode.REQUIRED)
    without = probe(policy).model_copy(
        update={
            "landlock_abi": 0,
            "filesystem": False,
            "scoped": False,
            "level": "none",
            "problems": ["the kernel offers no Landlock"],
        }
    )
    code, seen, stderr = run_trying(
        job, [["write", str(job.files / "x")]], monkeypatch, policy, without
    )
    assert code == SANDBOX_EXIT_CODE
    assert seen == {}
    assert "the command was not run" in stderr and "no Landlock" in stderr
    assert not (job.files / "x").exists()


def test_a_second_thread_in_the_commands_process_runs_nothing(
    job: JobFolders, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Landlock and no_new_privs bind the calling thread alone: with another thread in
    the process (a library's at-fork hook, say), the command does not run, even when
    the sandbox is only best effort."""

    def start_a_thread(limits: object) -> None:  # runs in the forked child, just before
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()

    monkeypatch.setattr(runner.child, "_apply_limits", start_a_thread)
    policy = SandboxPolicy(mode=SandboxMode.BEST_EFFORT)
    code, seen, stderr = run_trying(job, [["write", str(job.files / "x")]], monkeypatch, policy)
    assert code == SANDBOX_EXIT_CODE
    assert seen == {}
    assert "the command was not run" in stderr and "has 2 threads" in stderr
    assert not (job.files / "x").exists()


def test_a_read_path_holding_a_service_folder_is_not_granted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    report = probe(SandboxPolicy(read_paths=[str(tmp_path)], private_paths=[str(data)]))
    assert any(str(tmp_path) in p and str(data) in p for p in report.problems)


def test_read_paths_are_compared_with_private_ones_as_the_kernel_resolves_them(
    tmp_path: Path,
) -> None:
    (tmp_path / "service" / "data").mkdir(parents=True)
    (tmp_path / "inputs").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "service")  # holds data, by another name
    (tmp_path / "data-link").symlink_to(tmp_path / "service" / "data")
    (tmp_path / "service-data").mkdir()  # a name that starts like it, not inside it
    asked = [str(tmp_path / n) for n in ("alias", "inputs", "service-data", "service/data")]
    _, readable, problems = read_paths(
        SandboxPolicy(read_paths=asked, private_paths=[str(tmp_path / "data-link")])
    )
    assert [p for p in readable if p.startswith(str(tmp_path))] == asked[1:3]
    assert sorted(problems) == sorted(
        f"{tmp_path / n} is not readable by commands: it holds {tmp_path / 'data-link'}"
        for n in ("alias", "service/data")
    )


def test_a_runner_forked_from_a_template_confines_as_the_template_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warm runners take the template's probe (its sync commands run under it) rather
    than fork again to check the uid; another policy is still probed."""
    import runner.sandbox as sandbox

    monkeypatch.setattr(sandbox, "_inherited", None)
    policy = SandboxPolicy(read_paths=[str(tmp_path)])
    found = probe(policy)
    sandbox.keep_for_forks(policy, found)

    def no_fork(*_: object) -> str | None:
        raise AssertionError("probed again")

    monkeypatch.setattr(sandbox, "_uid_cannot_read", no_fork)
    assert probe(SandboxPolicy(read_paths=[str(tmp_path)])) == found
    probe(policy).problems.append("changed by one caller")
    assert probe(policy) == found  # each caller gets its own copy
    other = SandboxPolicy(read_paths=[str(tmp_path / "elsewhere")])
    if os.geteuid() == 0:  # the uid check (a fork) runs only as root
        with pytest.raises(AssertionError, match="probed again"):
            probe(other)
