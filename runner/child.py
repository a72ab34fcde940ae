"""What one command's process does after the fork, until it exits.

It runs in a freshly forked child of the template process (see zygote.py) or of
a runner: its own session and process group (so a timeout can kill everything
it started), its own working directory, stdin from /dev/null, stdout and stderr
on the descriptors the caller passed (so C libraries and subprocesses are
captured too, not only Python's sys.stdout), no other descriptor of its parent,
a scrubbed environment, resource limits, a subreaper for whatever it starts,
and the sandbox (runner/sandbox.py) last, right before Zyra runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import socket
import struct
import sys
import tempfile
import traceback
from typing import Any, NoReturn

from pydantic import BaseModel, Field

from runner import socket_guard
from runner.libc import prctl
from runner.outbound import OutboundPolicy
from runner.reaper import (
    become_subreaper,
    children,
    children_list_of_this_thread,
    reap_strays,
)
from runner.sandbox import (
    SANDBOX_EXIT_CODE,
    SandboxPolicy,
    SandboxReport,
    SandboxUnavailableError,
    confine,
)

PR_SET_PDEATHSIG = 1

EXIT_CODE = struct.Struct("i")  # how a command reports its exit code (`report`)


class ResourceLimits(BaseModel):
    """rlimits applied to a command; None leaves the inherited limit."""

    memory_bytes: int | None = Field(None, description="RLIMIT_AS: address space")
    file_size_bytes: int | None = Field(None, description="RLIMIT_FSIZE: largest file written")
    open_files: int | None = Field(1024, description="RLIMIT_NOFILE")
    processes: int | None = Field(None, description="RLIMIT_NPROC")


class ChildRequest(BaseModel):
    """Everything the child needs to run one command."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    sandbox: SandboxPolicy = Field(default_factory=SandboxPolicy)
    writable: list[str] = Field(
        default_factory=list, description="The job's own folders: all a command may write."
    )
    outbound_allow: list[str] = Field(
        default_factory=list,
        description="ZYRA_OUTBOUND_ALLOW: internal destinations the command may still reach.",
    )


def exit_code_of(exc: SystemExit) -> int:
    """The process exit code Python itself would use for this SystemExit."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _apply_limits(limits: ResourceLimits) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for which, value in (
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_NPROC, limits.processes),
    ):
        if value is not None:
            _, hard = resource.getrlimit(which)
            cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (cap, cap))


def die_with_parent() -> None:
    """A command never outlives the process that launched it (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def redirect_stdio(stdout_fd: int, stderr_fd: int, keep: int | None = None) -> None:
    """stdin from /dev/null, stdout and stderr to the given descriptors; every other
    descriptor closed but `keep`."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)
    for fd in {devnull, stdout_fd, stderr_fd} - {0, 1, 2, keep}:
        os.close(fd)
    # Nothing the parent had open (sockets, databases, other jobs' pipes) comes along.
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if keep is None:
        os.closerange(3, limit)
    else:
        os.closerange(3, keep)
        os.closerange(keep + 1, limit)
    # sys.stdout/stderr must write to descriptors 1 and 2 (a host that swapped them, like
    # pytest's capture, gets fresh ones); lines reach a watching client as written.
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = getattr(sys, name)
        try:
            on_fd = stream.fileno() == fd
        except (OSError, ValueError, AttributeError):
            on_fd = False
        if on_fd:
            stream.reconfigure(line_buffering=True)
        else:
            setattr(sys, name, open(fd, "w", buffering=1, closefd=False, errors="replace"))  # noqa: SIM115


def reset_logging() -> None:
    """Undo logging set up by preloaded libraries, so Zyra's own set-up takes
    effect as in a fresh `zyra` process (its INFO lines reach stderr)."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


def _per_run_state() -> None:
    """Library state fixed at import time in the template process that must follow
    this job's HOME instead (cartopy downloads map data under it)."""
    cartopy = sys.modules.get("cartopy")
    if cartopy is not None:
        cartopy.config["data_dir"] = os.path.join(
            os.path.expanduser("~"), ".local", "share", "cartopy"
        )


def run_zyra(argv: list[str]) -> int:
    """Run Zyra's CLI in this process; the exit code a `zyra` process would have."""
    from runner.zyra_parsers import main

    reset_logging()
    sys.argv = ["zyra", *argv]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exit_code_of(exc)
    except BaseException:
        traceback.print_exc()
        code = 1
    return code if isinstance(code, int) and not isinstance(code, bool) else int(bool(code))


def become_command(
    request: ChildRequest,
    stdout_fd: int,
    stderr_fd: int,
    sandbox: SandboxReport,
    report: socket.socket | None = None,
) -> NoReturn:
    """Turn this freshly forked process into the command; never returns. `sandbox` is
    what the launcher found this machine offers (runner.sandbox.probe). `report`, when
    given, gets the exit code (struct "i") once the command's output is complete, before
    the process exits: tearing down a large forked address space takes longer than many
    commands, and the caller need not wait for it. The command holds that socket while
    it runs; all it could say there is an exit code of its own, as by exiting."""
    code = 1
    own_children = children
    try:
        die_with_parent()
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        redirect_stdio(stdout_fd, stderr_fd, keep=report.fileno() if report else None)
        os.chdir(request.cwd)
        os.environ.clear()
        os.environ.update(request.env)
        tempfile.tempdir = None  # recomputed from this job's TMPDIR
        os.umask(request.sandbox.umask)
        become_subreaper()
        own_children = children_list_of_this_thread()  # before /proc is shut to it
        _apply_limits(request.limits)
        confine(request.sandbox, sandbox, request.writable)
        # What Zyra connects to by itself (redirects, pages, a name resolving anew) is held
        # to the same rule as the URLs the API checked.
        socket_guard.install(OutboundPolicy.from_entries(request.outbound_allow))
        _per_run_state()
        code = run_zyra(request.argv)
    except SandboxUnavailableError as exc:
        with contextlib.suppress(Exception):
            print(f"[sandbox] the command was not run: {exc}", file=sys.stderr)
        code = SANDBOX_EXIT_CODE
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        # Whatever happened above, this process never returns into its parent's code.
        _flush_quietly(sys.stdout, sys.stderr)
        if report is not None:
            # Nothing the command started may go on writing after the code is out: as a
            # subreaper this process is the parent of every descendant left behind.
            with contextlib.suppress(Exception):
                reap_strays(listing=own_children)
            _end_output()
            with contextlib.suppress(Exception):
                report.send(EXIT_CODE.pack(code))
        os._exit(code)


def _end_output() -> None:
    """Close stdout and stderr: the reader sees the end of the output (unless something
    the command started still holds them) without waiting for this process to go."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)


def _flush_quietly(*streams: Any) -> None:
    for stream in streams:
        # A closed pipe at exit changes nothing.
        with contextlib.suppress(Exception):
            stream.flush()
