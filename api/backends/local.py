"""The local backend: one runner process per async job on this machine.

A runner is forked from the API's template process when there is one (warm: Zyra and
the runner already imported, runner/warm_runner.py), else started as `python -m runner`.

At most `max_running` runners at once; later jobs wait `queued`, in order, and
start as slots free. The spec of a waiting job is on disk, so a restarted API
queues it again. Jobs arrive here only while their principal has room under its
own cap (api/limits/dispatcher.py), so one principal cannot fill every slot.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from api.backends.base import RunnerExit, RunnerJob, RunnerReports
from runner import tracing
from runner.credentials import CREDENTIALS_ENV
from runner.execute import ExecutorUnavailableError, kill_group
from runner.lifecycle import ExitReason
from runner.spec import JobSpec
from runner.warm_runner import RunnerRequest

RETRY_START_S = 2.0  # a runner that could not start (e.g. Redis down) is tried again
log = logging.getLogger("zyra.local")


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks: tells a pid apart from a reused one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def exit_code_of_returncode(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class RunnerForker(Protocol):
    """The template process's side that forks runners (runner.execute.Zygote)."""

    def spawn_runner(self, request: RunnerRequest, log_fd: int) -> tuple[int, Future[int]]: ...


class RunnerProcess(Protocol):
    pid: int

    def wait(self) -> int | None:
        """Its return code (negative: killed by that signal); None if nobody can tell."""
        ...


class WarmRunner:
    """A runner the template process forked: its status comes from there."""

    def __init__(self, pid: int, finished: Future[int]) -> None:
        self.pid, self._finished = pid, finished
        self._ticks = _start_ticks(pid)

    def wait(self) -> int | None:
        try:
            return os.waitstatus_to_exitcode(self._finished.result())
        except ExecutorUnavailableError:
            # The template process went first; the runner did not. Watch it by pid: its
            # outcome is the result it stores.
            while self._ticks is not None and _start_ticks(self.pid) == self._ticks:
                time.sleep(0.2)
            return None


class LocalBackend:
    def __init__(
        self,
        work_dir: Path,
        runner_env: dict[str, str],
        reports: RunnerReports,
        kill_grace_s: float,
        max_running: int,
        forker: RunnerForker | None = None,
    ) -> None:
        """`forker`: fork runners from the template process rather than start them."""
        self.work_dir = work_dir
        self.runner_env = runner_env  # no secrets: each runner gets its own credentials
        self.reports = reports
        self.kill_grace_s = kill_grace_s
        self.max_running = max_running
        self.forker = forker
        self._procs: dict[str, RunnerProcess] = {}
        self._waiting: deque[str] = deque()
        self._lock = threading.Lock()
        self._retry_pending = False
        self._trace_env: dict[str, dict[str, str]] = {}  # a waiting runner's TRACEPARENT, …

    @functools.cached_property
    def dispatch_group(self) -> str:
        """Jobs queued here start only here, where their folders and inputs are: an id
        kept in the work dir, so an API restarted on the same disk finds its jobs."""
        path = self.work_dir / "dispatch-group"
        if not path.exists():
            self.work_dir.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f"{path.name}.{os.getpid()}")
            draft.write_text(f"local:{uuid.uuid4().hex}")
            with contextlib.suppress(FileExistsError):  # another process was first
                os.link(draft, path)
            draft.unlink()
        return path.read_text().strip()

    def spec_path(self, job_id: str) -> Path:
        return self.work_dir / f"{job_id}.spec.json"

    def log_path(self, job_id: str) -> Path:
        return self.work_dir / f"{job_id}.runner.log"

    def launch(self, job: RunnerJob, spec: JobSpec) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.spec_path(job.job_id).write_text(spec.model_dump_json())
        with self._lock:
            self._trace_env[job.job_id] = tracing.runner_env(job.traceparent)
            self._waiting.append(job.job_id)
        self._dispatch_or_retry()  # from here on the job is ours: never raise

    def _dispatch_or_retry(self) -> None:
        """Start waiting runners; one that cannot start now stays first in line and is
        tried again shortly."""
        try:
            self._dispatch()
        except Exception as exc:
            log.warning("a runner could not start (retrying in %g s): %s", RETRY_START_S, exc)
            with self._lock:
                if self._retry_pending:
                    return
                self._retry_pending = True
            timer = threading.Timer(RETRY_START_S, self._retry)
            timer.daemon = True
            timer.start()

    def _retry(self) -> None:
        with self._lock:
            self._retry_pending = False
        self._dispatch_or_retry()

    def _dispatch(self) -> None:
        """Start waiting runners while there are free slots."""
        while True:
            with self._lock:
                if not self._waiting or len(self._procs) >= self.max_running:
                    return
                job_id = self._waiting.popleft()
                try:
                    proc = self._start(job_id)
                except BaseException:
                    self._waiting.appendleft(job_id)  # still first in line for the next try
                    raise
                self._procs[job_id] = proc
            handle = {"kind": "local", "pid": proc.pid, "start_ticks": _start_ticks(proc.pid)}
            self.reports.on_runner_started(job_id, handle)
            threading.Thread(target=self._watch_child, args=(job_id, proc), daemon=True).start()

    def _start(self, job_id: str) -> RunnerProcess:
        env = dict(self.runner_env)
        # Minted now, not at submission: a queued job's URLs must not expire waiting.
        spec = JobSpec.model_validate_json(self.spec_path(job_id).read_text())
        credentials = self.reports.runner_credentials(spec)
        if credentials is not None:
            env[CREDENTIALS_ENV] = credentials.model_dump_json()
        env.update(self._trace_env.get(job_id, {}))  # the job's trace goes on in the runner
        args = ["--spec", str(self.spec_path(job_id))]
        with self.log_path(job_id).open("ab") as runner_log:
            if self.forker is not None:
                request = RunnerRequest(args=args, env=env, cwd=os.getcwd())
                try:
                    return WarmRunner(*self.forker.spawn_runner(request, runner_log.fileno()))
                except ExecutorUnavailableError as exc:
                    log.warning("starting a runner from scratch: %s", exc)
            return subprocess.Popen(
                [sys.executable, "-m", "runner", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=runner_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # cancel can signal the runner's whole group
            )

    def _watch_child(self, job_id: str, proc: RunnerProcess) -> None:
        returncode = proc.wait()
        with self._lock:
            self._procs.pop(job_id, None)
            self._trace_env.pop(job_id, None)
        if returncode is None:  # its stored result tells; without one it was lost
            self.reports.on_runner_exit(job_id, RunnerExit(None, ExitReason.LOST))
        else:
            reason = ExitReason.COMPLETED if returncode == 0 else ExitReason.ERROR
            exit_code = exit_code_of_returncode(returncode)
            self.reports.on_runner_exit(job_id, RunnerExit(exit_code, reason))
        with contextlib.suppress(FileNotFoundError):
            self.spec_path(job_id).unlink()
        self._dispatch_or_retry()

    def _alive(self, handle: dict[str, Any] | None) -> bool:
        if not handle or handle.get("kind") != "local":
            return False
        ticks = _start_ticks(handle["pid"])
        return ticks is not None and ticks == handle.get("start_ticks")

    def cancel(self, job: RunnerJob) -> None:
        with self._lock:
            waiting = job.job_id in self._waiting
            if waiting:
                self._waiting.remove(job.job_id)
                self._trace_env.pop(job.job_id, None)
        if waiting:  # never started: nothing to stop
            self.spec_path(job.job_id).unlink(missing_ok=True)
            self.reports.on_runner_exit(job.job_id, RunnerExit(None, ExitReason.CANCELLED))
            return
        handle = job.runner_handle
        with self._lock:
            proc = self._procs.get(job.job_id)
        if handle is None and proc is not None:  # started a moment ago, handle not saved yet
            handle = {"kind": "local", "pid": proc.pid, "start_ticks": _start_ticks(proc.pid)}
        if not self._alive(handle):
            return
        pid = handle["pid"]  # type: ignore[index]
        # The runner forwards SIGTERM to its command and waits the grace period
        # itself; SIGKILL of the whole group follows if it has not exited by then.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

        def force() -> None:
            deadline = time.monotonic() + self.kill_grace_s + 3.0
            while time.monotonic() < deadline and self._alive(handle):
                time.sleep(0.1)
            if self._alive(handle):
                kill_group(pid, signal.SIGKILL)

        threading.Thread(target=force, daemon=True).start()

    def reconcile(self, active: list[RunnerJob]) -> None:
        for job in active:  # oldest first: they wait again in that order
            with self._lock:
                if job.job_id in self._procs or job.job_id in self._waiting:
                    continue
                # Never started (no runner handle) and its spec is still on disk.
                requeue = job.runner_handle is None and self.spec_path(job.job_id).exists()
                if requeue:
                    self._trace_env[job.job_id] = tracing.runner_env(job.traceparent)
                    self._waiting.append(job.job_id)
            if requeue:
                continue
            if self._alive(job.runner_handle):
                threading.Thread(target=self._watch_orphan, args=(job,), daemon=True).start()
            else:
                self.reports.on_runner_exit(job.job_id, RunnerExit(None, ExitReason.LOST))
        self._dispatch_or_retry()

    def _watch_orphan(self, job: RunnerJob) -> None:
        """A runner started by an earlier API process: not our child, so poll it."""
        while self._alive(job.runner_handle):
            time.sleep(0.2)
        # Its exit code is in the result it stored; if it stored none, it was lost.
        self.reports.on_runner_exit(job.job_id, RunnerExit(None, ExitReason.LOST))

    def release(self, job_id: str) -> None:
        """Nothing kept: the runner's credentials lived in its own environment."""

    def forget(self, job_ids: Sequence[str]) -> None:
        """The runners' logs, and the specs of runners an earlier API process watched."""
        for job_id in job_ids:
            self.log_path(job_id).unlink(missing_ok=True)
            self.spec_path(job_id).unlink(missing_ok=True)

    def runner_logs(self, job_id: str) -> str | None:
        path = self.log_path(job_id)
        return path.read_text(errors="replace") if path.exists() else None

    def close(self) -> None:
        """Runners keep running across an API restart; reconcile picks them up."""
