"""runner/fork_output.py: what a function returns in a forked child, or why it did not."""

from __future__ import annotations

import os
import signal
import time

import pytest

from runner.fork_output import output_of_fork


def test_the_child_s_return_comes_back_and_its_memory_stays_its_own() -> None:
    kept = bytearray(b"parent")

    def work() -> bytes:
        kept[:] = b"child!"
        return b"%d" % os.getpid()

    child_pid = int(output_of_fork(work, "a test child"))
    assert child_pid != os.getpid()
    assert kept == b"parent"


def test_a_child_that_raises_is_an_error_naming_it() -> None:
    def work() -> bytes:
        raise RuntimeError("no")

    with pytest.raises(OSError, match=r"^a test child ended with 1$"):
        output_of_fork(work, "a test child")


def test_a_child_past_its_time_is_stopped() -> None:
    """Even where this process handles SIGALRM itself (pytest-timeout does)."""

    def work() -> bytes:
        time.sleep(30)
        return b""

    started = time.monotonic()
    with pytest.raises(OSError, match=rf"^a slow child ended with {-signal.SIGALRM}$"):
        output_of_fork(work, "a slow child", timeout_s=1)
    assert time.monotonic() - started < 10
