"""Nothing a command starts outlives its job, `setsid()` or double forks included.

The process that launches commands (the template process, or a runner) is a
*child subreaper*: a descendant whose parent dies is re-parented to it instead
of to init. Each command is a subreaper too, so while it runs its orphans stay
with it. Once a command has exited, anything it left behind therefore surfaces
as a child of the launcher that is not a running command: a stray, killed at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Collection
from pathlib import Path

from runner.libc import prctl

PR_SET_CHILD_SUBREAPER = 36


def children_list_of_this_thread() -> Callable[[], list[int]]:
    """This thread's children, from a file opened now: a command confined afterwards
    (Landlock shuts /proc) still reads it. Empty once the file cannot be read."""
    fd = os.open(f"/proc/self/task/{threading.get_native_id()}/children", os.O_RDONLY)

    def listing() -> list[int]:
        try:
            return [int(pid) for pid in os.pread(fd, 1 << 16, 0).split()]
        except (OSError, ValueError):
            return []

    return listing


def become_subreaper() -> None:
    with contextlib.suppress(OSError, AttributeError):
        prctl(PR_SET_CHILD_SUBREAPER, 1)


def children() -> list[int]:
    """This process's children, whichever of its threads they belong to."""
    found: list[int] = []
    pid = os.getpid()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        with contextlib.suppress(OSError):
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return found


def kill_strays(keep: Collection[int], listing: Callable[[], list[int]] = children) -> list[int]:
    """SIGKILL every child not in `keep` (running commands, children that are not a
    command's); the pids signalled. The caller reaps them (and the orphans they had,
    which come to it next). `listing`: how this process's children are found."""
    strays = [pid for pid in listing() if pid not in keep]
    for pid in strays:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return strays


def reap_strays(keep: Collection[int] = (), listing: Callable[[], list[int]] = children) -> int:
    """Kill and reap strays until none is left (for a launcher that waits itself)."""
    total = 0
    while strays := kill_strays(keep, listing):
        total += len(strays)
        for pid in strays:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    return total
