"""What the kernel lets one command touch: its own job's folders and read-only software.

Every command process (sync and async) is confined right before it runs Zyra:
- no other descriptor is open, and no exec can regain privileges (no_new_privs);
- not root: a process started as root drops to an unprivileged uid, or, when that
  uid could not even read the Python installation, keeps uid 0 with no capability;
- Landlock: read and execute beneath the Python prefix, the installed packages and
  system libraries, read beneath the few files of /etc a library needs and the
  operator's extra read paths; read and write beneath its own working directory,
  temp dir and home; nothing else. Since Landlock ABI 6 it can only signal, or
  connect to abstract sockets of, processes inside its own domain; at any ABI it
  cannot ptrace, or read /proc/<pid>/environ of, a process outside it.

`probe` finds out once, at start-up, what this machine offers; `confine` applies
it in the forked child. `ZYRA_SANDBOX` chooses how strict to be: `required` stops
the start (or fails the job) when the filesystem cannot be confined,
`best-effort` applies what there is, `off` applies nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

import runner
from runner import landlock
from runner.landlock import FsAccess
from runner.libc import libc, prctl

PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
# noroot + no_setuid_fixup + keep_caps, each locked: uid 0 never regains capabilities.
SECURE_NOROOT_LOCKED = 0b101111
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
SANDBOX_EXIT_CODE = 126  # as a shell reports a command it could not execute

# Beneath these a command may read and execute (when they exist).
SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")
# The few files and folders of /etc that Python, TLS, DNS, fonts and time zones read.
ETC_READ = (
    "/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/fonts", "/etc/localtime",
    "/etc/timezone", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/resolv.conf",
    "/etc/hosts", "/etc/host.conf", "/etc/gai.conf", "/etc/mime.types", "/etc/protocols",
    "/etc/services", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
    "/etc/os-release", "/etc/matplotlibrc",
)  # fmt: skip
DEVICES_READ = ("/dev/zero", "/dev/urandom", "/dev/random")
DEVICES_READ_WRITE = ("/dev/null", "/dev/full")
# No EXECUTE: a command does not run programs it wrote itself.
WRITABLE = (
    FsAccess.WRITE_FILE
    | FsAccess.READ_FILE
    | FsAccess.READ_DIR
    | FsAccess.REMOVE_DIR
    | FsAccess.REMOVE_FILE
    | FsAccess.MAKE_DIR
    | FsAccess.MAKE_REG
    | FsAccess.MAKE_SOCK
    | FsAccess.MAKE_FIFO
    | FsAccess.MAKE_SYM
    | FsAccess.REFER
    | FsAccess.TRUNCATE
)


class SandboxMode(StrEnum):
    REQUIRED = "required"
    BEST_EFFORT = "best-effort"
    OFF = "off"


class SandboxPolicy(BaseModel):
    """What the service asks for; it travels with every command request."""

    mode: SandboxMode = SandboxMode.BEST_EFFORT
    read_paths: list[str] = Field(
        default_factory=list, description="Data commands may read: the allowed path prefixes."
    )
    tool_paths: list[str] = Field(
        default_factory=list,
        description="Software commands may read and run besides Python's and the system's: "
        "tools such as wgrib2 or ffmpeg, map data.",
    )
    private_paths: list[str] = Field(
        default_factory=list,
        description="Service folders no read path may contain (data dir, storage, key file).",
    )
    uid: int = Field(65534, ge=1, description="The uid a command runs as when started as root.")
    gid: int = Field(65534, ge=1)
    umask: int = Field(
        0o077, description="0o007 when another container (its group) reads what commands write."
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> SandboxPolicy:
        """The policy of a launcher started on its own (the sync executor's container),
        from the variables the API reads: ZYRA_SANDBOX, ZYRA_SANDBOX_UID,
        ZYRA_SANDBOX_GID, ZYRA_SANDBOX_TOOL_PATHS."""
        given = {"mode": env.get("ZYRA_SANDBOX"), "uid": env.get("ZYRA_SANDBOX_UID"),
                 "gid": env.get("ZYRA_SANDBOX_GID")}  # fmt: skip
        tools = [p.strip() for p in env.get("ZYRA_SANDBOX_TOOL_PATHS", "").split(",") if p.strip()]
        return cls.model_validate(
            {k: v.strip() for k, v in given.items() if v and v.strip()} | {"tool_paths": tools}
        )


class SandboxReport(BaseModel):
    """What is in force on this machine for this process's commands (`/readyz` shows it)."""

    mode: SandboxMode
    level: Literal["full", "partial", "none"]
    landlock_abi: int
    filesystem: bool = Field(description="Landlock confines files to the job's folders.")
    scoped: bool = Field(description="Signals and abstract sockets stay inside the job.")
    identity: str = Field(description="Who a command runs as.")
    drop_to_uid: int | None = None
    drop_to_gid: int | None = None
    drop_capabilities: bool = False
    problems: list[str] = Field(default_factory=list)

    @property
    def meets_required(self) -> bool:
        """Filesystem confined, no privileges, and a command kept uid 0 only where
        Landlock also scopes its signals: what `required` demands."""
        return self.filesystem and (self.scoped or not self.drop_capabilities)


class SandboxUnavailableError(RuntimeError):
    """`ZYRA_SANDBOX=required` and this machine cannot confine commands."""


def make_non_dumpable() -> None:
    """No core dumps, and /proc/<pid>/environ, mem, fd… of this process are closed to
    processes of the same uid (ptrace checks them): the service's own secrets."""
    with contextlib.suppress(OSError, AttributeError):
        prctl(PR_SET_DUMPABLE, 0)


def _contains(outer: str, inner: str) -> bool:
    """Whether real path `outer` holds real path `inner` (or is it)."""
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def software_paths() -> list[str]:
    """Read-and-execute paths: this interpreter, its packages, this code, system libraries."""
    found: dict[str, None] = {}
    for path in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                 str(Path(runner.__file__).resolve().parent),
                 *(p for p in sys.path if p.endswith(("site-packages", "dist-packages", ".zip"))),
                 *SYSTEM_DIRS):  # fmt: skip
        if path and os.path.exists(path):
            found[os.path.realpath(path)] = None
    return list(found)


def read_paths(policy: SandboxPolicy) -> tuple[list[str], list[str], list[str]]:
    """(read-execute paths, read-only paths, problems): nothing that holds a private path."""
    problems: list[str] = []
    # Each resolved once: this runs in every command's process, before it is confined.
    private = {p: os.path.realpath(p) for p in policy.private_paths}

    def safe(paths: Iterable[str]) -> list[str]:
        kept = []
        for path in paths:
            real = os.path.realpath(path)
            hidden = [p for p, real_p in private.items() if _contains(real, real_p)]
            if hidden:
                problems.append(f"{path} is not readable by commands: it holds {hidden[0]}")
            elif os.path.exists(path):
                kept.append(path)
        return kept

    software = safe([*software_paths(), *policy.tool_paths])
    return software, safe([*ETC_READ, *policy.read_paths]), problems


def _uid_cannot_read(uid: int, gid: int, paths: list[str]) -> str | None:
    """The first path `uid` cannot read (checked in a child that becomes that uid)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        failed = ""
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            failed = next((p for p in paths if not os.access(p, os.R_OK | os.X_OK)), "")
        except OSError as exc:
            failed = f"cannot become uid {uid}: {exc}"
        os.write(write_end, failed.encode()[:4000])
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        answer = f.read().decode()
    os.waitpid(pid, 0)
    return answer or None


# A template process's own finding, which the runners it forks inherit: they confine
# their commands exactly as its sync commands are confined, without probing again
# (the uid check forks, and a fork of a warm process costs tens of milliseconds).
_inherited: tuple[SandboxPolicy, SandboxReport] | None = None


def keep_for_forks(policy: SandboxPolicy, report: SandboxReport) -> None:
    """Let processes forked from this one answer `probe(policy)` with `report`."""
    global _inherited
    _inherited = (policy.model_copy(deep=True), report.model_copy(deep=True))


def probe(policy: SandboxPolicy) -> SandboxReport:
    """What this process can do for its commands; cheap enough for every start-up."""
    if _inherited is not None and _inherited[0] == policy:
        return _inherited[1].model_copy(deep=True)
    abi = landlock.abi_version()
    uid = os.geteuid()
    if policy.mode is SandboxMode.OFF:
        return SandboxReport(mode=policy.mode, level="none", landlock_abi=abi, filesystem=False,
                             scoped=False, identity=f"uid {uid}" + (" with capabilities" if uid == 0
                                                                     else ""),
                             problems=["ZYRA_SANDBOX=off: commands are not confined"])  # fmt: skip
    software, _, problems = read_paths(policy)
    if abi < 1:
        problems.append(
            "the kernel offers no Landlock (Linux 5.13+ with landlock among its LSMs, and "
            "a seccomp profile that allows the landlock_* system calls)"
        )
    elif abi < 6:
        problems.append(f"Landlock ABI {abi} < 6: signals and abstract sockets are not scoped")
    report = SandboxReport(mode=policy.mode, level="none", landlock_abi=abi, filesystem=abi >= 1,
                           scoped=abi >= 6, identity=f"uid {uid}", problems=problems)  # fmt: skip
    if uid == 0:
        unreadable = _uid_cannot_read(policy.uid, policy.gid, software)
        if unreadable is None:
            report.identity = f"uid {policy.uid}"
            report.drop_to_uid, report.drop_to_gid = policy.uid, policy.gid
        else:
            report.identity = "uid 0 without capabilities"
            report.drop_capabilities = True
            report.problems.append(
                f"started as root but uid {policy.uid} cannot read {unreadable}; "
                "commands keep uid 0 with every capability dropped"
            )
            if not report.scoped:
                report.problems.append(
                    "as uid 0 without Landlock scoping a command could signal other root processes"
                )
    if report.filesystem:
        report.level = "full" if report.scoped else "partial"
    return report


def require(report: SandboxReport) -> None:
    """Raise when the mode is `required` and the report falls short of it."""
    if report.mode is SandboxMode.REQUIRED and not report.meets_required:
        raise SandboxUnavailableError(
            "ZYRA_SANDBOX=required but commands cannot be confined here: "
            + "; ".join(report.problems)
        )


def hand_over(report: SandboxReport, paths: Iterable[Path]) -> None:
    """Give a job's folders (and what is staged in them) to the uid its command runs as."""
    if report.drop_to_uid is None:
        return
    uid, gid = report.drop_to_uid, report.drop_to_gid or report.drop_to_uid
    for top in paths:
        os.chown(top, uid, gid)
        for root, dirs, files in os.walk(top):
            for name in (*dirs, *files):
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def _drop_capabilities() -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        prctl(PR_CAPBSET_DROP, cap)
    if prctl(PR_SET_SECUREBITS, SECURE_NOROOT_LOCKED) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECUREBITS) failed")
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    if libc().capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _drop_identity(report: SandboxReport) -> None:
    if report.drop_to_uid is not None:
        gid = report.drop_to_gid or report.drop_to_uid
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(report.drop_to_uid, report.drop_to_uid, report.drop_to_uid)
    elif report.drop_capabilities:
        _drop_capabilities()


def _landlock(policy: SandboxPolicy, report: SandboxReport, writable: list[str]) -> None:
    ruleset = landlock.Ruleset(report.landlock_abi)
    software, readable, _ = read_paths(policy)
    for path in software:
        ruleset.allow(path, landlock.READ_EXECUTE)
    for path in [*readable, *DEVICES_READ]:
        ruleset.allow(path, landlock.READ)
    for path in DEVICES_READ_WRITE:
        ruleset.allow(path, FsAccess.READ_FILE | FsAccess.WRITE_FILE)
    for path in writable:
        ruleset.allow(path, WRITABLE)
    ruleset.restrict_self()


# How long a command's process waits for exiting threads to leave before it is confined.
THREADS_SETTLE_S = 0.5


def thread_count(settle_s: float = THREADS_SETTLE_S) -> int:
    """This process's threads, as the kernel counts them (C threads included), once
    those on their way out are gone: an at-fork hook may start and join threads (the
    OpenTelemetry SDK's resource detection does), which leave the kernel's list a
    moment after their join."""
    deadline = time.monotonic() + settle_s
    while (count := len(os.listdir("/proc/self/task"))) > 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    return count


def confine(policy: SandboxPolicy, report: SandboxReport, writable: list[str]) -> None:
    """Confine this (freshly forked, single-threaded) process for good. In `required`
    mode any failure raises; in `best-effort` what works is kept."""
    if policy.mode is SandboxMode.OFF:
        return
    require(report)
    # Landlock and no_new_privs bind the calling thread alone: a second thread (started
    # by some library's at-fork hook) would run beside the command unconfined.
    if (threads := thread_count()) != 1:
        raise SandboxUnavailableError(
            f"the command's process has {threads} threads; it is confined only with one"
        )
    steps = [("no_new_privs", landlock.set_no_new_privs),
             ("identity", lambda: _drop_identity(report))]  # fmt: skip
    if report.filesystem:
        steps.append(("landlock", lambda: _landlock(policy, report, writable)))
    for name, step in steps:
        try:
            step()
        except OSError as exc:
            if policy.mode is SandboxMode.REQUIRED:
                raise SandboxUnavailableError(f"sandbox step {name} failed: {exc}") from exc
            print(f"[sandbox] {name} not applied: {exc}", file=sys.stderr)
