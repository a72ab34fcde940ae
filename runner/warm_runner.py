"""A runner forked from the template process instead of started as a fresh interpreter.

`python -m runner` imports the runner's modules, then forks its command, which imports
Zyra: about a second and a half before an async job's command starts on the local
backend. The API's own template process (runner/zygote.py; the embedded one only,
never a sync executor's socket) has all of it in memory, warmed up; it forks the runner
as it forks a command, and the command that runner forks is warm too.

The runner is then what `python -m runner` would be: a session of its own (a cancel
signals its group), stdin from /dev/null, stdout and stderr into its log, exactly the
environment the API gives it (its own credentials, nothing of the template's), none of
the template's descriptors. Unlike a command it is not confined (it confines its
command itself) and not tied to its parent's life: like a fresh runner it outlives an
API restart, and the next API process watches it by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import traceback
from typing import NoReturn

from pydantic import BaseModel

from runner.child import exit_code_of, redirect_stdio, reset_logging
from runner.libc import prctl
from runner.zygote_requests import read_request

PR_SET_NAME = 15


class RunnerRequest(BaseModel):
    """What `python -m runner` would have been started with."""

    args: list[str]  # after `python -m runner`, e.g. ["--spec", PATH]
    env: dict[str, str]
    cwd: str = "/"


def become_runner(request_fd: int, log_fd: int) -> NoReturn:
    """Turn this freshly forked process into the runner asked for in the memory file
    `request_fd`; never returns."""
    code = 1
    try:
        request = RunnerRequest.model_validate_json(read_request(request_fd))
        os.setsid()
        _name_process(b"zyra-runner")  # what ps and top show, not the template's name
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        redirect_stdio(log_fd, log_fd)
        reset_logging()  # as in a fresh interpreter: no handler left by the warm-up
        os.chdir(request.cwd)
        os.environ.clear()
        os.environ.update(request.env)
        tempfile.tempdir = None  # recomputed from the runner's own TMPDIR
        sys.argv = ["python -m runner", *request.args]
        from runner.__main__ import main

        main()
        code = 0
    except SystemExit as exc:
        code = exit_code_of(exc)
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _name_process(name: bytes) -> None:
    with contextlib.suppress(OSError, AttributeError):
        prctl(PR_SET_NAME, name)
