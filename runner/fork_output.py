"""Run a function in a child forked now and read back what it returns: for work that
must happen in a copy of this process (it writes to memory this process keeps)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable


def output_of_fork(work: Callable[[], bytes], what: str, timeout_s: float | None = None) -> bytes:
    """The bytes `work` returns in a child forked now. OSError naming `what` if the
    child did not end with exit 0: `work` raised, or ran past `timeout_s`."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()  # not written twice, by both processes
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (a child: its coverage is not collected)
        code = 1
        try:
            os.close(read_fd)
            if timeout_s is not None:  # SIGALRM's default action ends it, whatever
                signal.signal(signal.SIGALRM, signal.SIG_DFL)  # this process made of it
                signal.alarm(max(1, int(timeout_s)))
            output = work()
            with os.fdopen(write_fd, "wb") as out:
                out.write(output)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as report:
        data = report.read()
    _, status = os.waitpid(pid, 0)
    if (code := os.waitstatus_to_exitcode(status)) != 0:
        raise OSError(f"{what} ended with {code}")
    return data
