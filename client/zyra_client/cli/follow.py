"""Follow a job as a local command would run: its output live, then its exit code."""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from zyra_client.cli.status_line import StatusLine
from zyra_client.client import Job
from zyra_client.errors import ConnectionFailed
from zyra_client.models import JobView

# What a shell reports for a command ended by Ctrl-C (128 + SIGINT).
INTERRUPTED = 130
USAGE_ERROR = 2  # as argparse


def say(message: str) -> None:
    print(f"zyra-remote: {message}", file=sys.stderr, flush=True)


@dataclass
class Printed:
    """How much of the job's output is on the terminal already."""

    stdout: int = 0
    stderr: int = 0


def stream_output(job: Job, status_line: StatusLine | None = None) -> JobView:
    """Print the job's stdout and stderr as its events bring them, until it ends; then
    its final view. Without the event stream, long polls do (the rest printed at the end).
    A `status_line` shows the job's status and progress below the output meanwhile."""
    printed = Printed()
    line = status_line or StatusLine(job.id, enabled=False)
    try:
        for event in job.events():
            if event.stdout or event.stderr:
                line.erase()
            if event.stdout:
                sys.stdout.write(event.stdout)
                sys.stdout.flush()
                printed.stdout += len(event.stdout)
            if event.stderr:
                sys.stderr.write(event.stderr)
                sys.stderr.flush()
                printed.stderr += len(event.stderr)
            line.update(event.status, event.progress)
    except ConnectionFailed as exc:
        line.erase()
        say(f"{exc}; waiting for the job to end")
    view = job.refresh()
    if not view.done:
        view = job.wait()
    line.erase()
    # A lost stream (or a server without one) still shows everything once.
    sys.stdout.write(view.stdout[printed.stdout :] if not view.stdout_truncated else "")
    sys.stderr.write(view.stderr[printed.stderr :] if not view.stderr_truncated else "")
    sys.stdout.flush()
    sys.stderr.flush()
    line.update(view.status, view.progress)
    line.finish()
    return view


def exit_code_of(view: JobView) -> int:
    """The remote command's exit code (124 timeout, 128+N a signal, … kept); 1 with the
    reason on stderr when it never ran."""
    if view.exit_code is None:
        say(f"job {view.job_id} {view.status} without running: {view.reason or 'no reason given'}")
        return 1
    if view.exit_code == 0 and not view.succeeded:
        say(f"job {view.job_id} {view.status}: {view.reason}")
        return 1
    return view.exit_code


def write_binary_stdout(job: Job, view: JobView) -> None:
    """A command's binary stdout is kept as an output: put it on our stdout."""
    name = next((o.name for o in view.outputs if o.source == "stdout"), None)
    if name is None:
        return
    with tempfile.TemporaryDirectory() as folder:
        path = job.download(Path(folder) / "stdout", file=name)
        with path.open("rb") as data:
            shutil.copyfileobj(data, sys.stdout.buffer)
    sys.stdout.buffer.flush()


def cancel_on_interrupt(job: Job) -> int:
    """Ctrl-C while following: the job must not run on unseen, so it is cancelled."""
    try:
        result = job.cancel()
        say(f"interrupted: job {job.id} {'cancelled' if result.cancelled else result.message}")
    except KeyboardInterrupt:
        say(f"interrupted again: job {job.id} may still run (zyra-remote cancel {job.id})")
    except Exception as exc:  # the cancel is best effort: say so, exit as interrupted
        say(f"interrupted, but cancelling job {job.id} failed: {exc}")
    return INTERRUPTED
