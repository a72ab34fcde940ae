"""Run one command in an isolated child and capture what it writes.

`CommandExecutor.run` forks the command from the template process (zygote.py),
reads its stdout and stderr separately as they are written (into files, and to
an optional callback for live streaming), enforces the timeout by killing the
child's whole process group, and reports the exit code with its Unix meaning:

- the command's own code (SystemExit or return value);
- 1 with the traceback on stderr for an uncaught exception;
- 128+N when killed by signal N (137 for SIGKILL, e.g. out of memory);
- 124 when the timeout ran out (as GNU `timeout` reports it).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from runner.child import ChildRequest, become_command

TIMEOUT_EXIT_CODE = 124
READ_CHUNK = 64 * 1024


class ExitReason(StrEnum):
    COMPLETED = "Completed"
    ERROR = "Error"
    TIMEOUT = "Timeout"
    SIGNALED = "Signaled"
    CANCELLED = "Cancelled"


class Stream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


OutputCallback = Callable[[Stream, bytes], None]


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int
    reason: ExitReason
    duration_s: float
    stdout_path: Path
    stderr_path: Path
    signal: int | None = None


class ExecutorUnavailableError(RuntimeError):
    """The template process could not be started or died."""


class Spawner(Protocol):
    def spawn(
        self, request: ChildRequest, stdout_fd: int, stderr_fd: int
    ) -> tuple[int, Future[int]]:
        """Start a child running the command; its pid and a future of its wait status."""
        ...


class ForkSpawner:
    """Forks the command straight from this process: for a runner that runs one command."""

    def spawn(
        self, request: ChildRequest, stdout_fd: int, stderr_fd: int
    ) -> tuple[int, Future[int]]:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            become_command(request, stdout_fd, stderr_fd)
        finished: Future[int] = Future()

        def wait() -> None:
            finished.set_result(os.waitpid(pid, 0)[1])

        threading.Thread(target=wait, daemon=True).start()
        return pid, finished


class Zygote:
    """Client side of the template process; safe to share between threads."""

    def __init__(self, env: dict[str, str], start_timeout_s: float = 120.0) -> None:
        self._env = env
        self._start_timeout_s = start_timeout_s
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._pending: dict[str, tuple[Future[int], Future[int]]] = {}
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._lock:
            self._ensure_running()

    def _ensure_running(self) -> socket.socket:
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "runner.zygote", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            env=self._env,
            stdin=subprocess.DEVNULL,
            cwd=self._env.get("HOME", "/"),
        )
        theirs.close()
        ours.settimeout(self._start_timeout_s)
        try:
            hello = json.loads(ours.recv(1 << 16) or b"{}")
        except (TimeoutError, json.JSONDecodeError) as exc:
            self._proc.kill()
            raise ExecutorUnavailableError(f"template process did not start: {exc}") from exc
        if not hello.get("ready"):
            raise ExecutorUnavailableError("template process exited while starting")
        ours.settimeout(None)
        self._sock = ours
        threading.Thread(target=self._read_replies, args=(ours,), daemon=True).start()
        return ours

    def _read_replies(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                break
            reply = json.loads(data)
            with self._lock:
                futures = self._pending.get(reply["id"])
                if futures is None:
                    continue
                started, finished = futures
                if "error" in reply:
                    self._pending.pop(reply["id"])
                    started.set_exception(ExecutorUnavailableError(reply["error"]))
                elif "pid" in reply:
                    started.set_result(reply["pid"])
                elif "status" in reply:
                    self._pending.pop(reply["id"])
                    finished.set_result(reply["status"])
        with self._lock:
            if self._sock is sock:
                self._sock = None
            lost, self._pending = self._pending, {}
        for started, finished in lost.values():
            for fut in (started, finished):
                if not fut.done():
                    fut.set_exception(ExecutorUnavailableError("template process exited"))

    def spawn(
        self, request: ChildRequest, stdout_fd: int, stderr_fd: int
    ) -> tuple[int, Future[int]]:
        """Start a child; returns its pid and a future of its raw wait status."""
        job = str(next(self._ids))
        started: Future[int] = Future()
        finished: Future[int] = Future()
        with self._lock:
            sock = self._ensure_running()
            self._pending[job] = (started, finished)
            payload = json.dumps({"id": job, "request": request.model_dump()}).encode()
            socket.send_fds(sock, [payload], [stdout_fd, stderr_fd])
        return started.result(timeout=30), finished

    def close(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
            proc = self._proc
        if sock is not None:
            sock.close()
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


def kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class CommandExecutor:
    """Runs commands through a spawner: the template process, or a plain fork."""

    def __init__(self, spawner: Spawner, kill_grace_s: float = 2.0) -> None:
        self.spawner = spawner
        self.kill_grace_s = kill_grace_s

    def run(
        self,
        request: ChildRequest,
        capture_dir: Path,
        timeout_s: float,
        on_output: OutputCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> RunOutcome:
        capture_dir.mkdir(parents=True, exist_ok=True)
        paths = {Stream.STDOUT: capture_dir / "stdout", Stream.STDERR: capture_dir / "stderr"}
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        started = time.monotonic()
        try:
            pid, finished = self.spawner.spawn(request, out_w, err_w)
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        stopped_by: ExitReason | None = None
        with (
            selectors.DefaultSelector() as selector,
            paths[Stream.STDOUT].open("wb") as out_file,
            paths[Stream.STDERR].open("wb") as err_file,
        ):
            selector.register(out_r, selectors.EVENT_READ, (Stream.STDOUT, out_file))
            selector.register(err_r, selectors.EVENT_READ, (Stream.STDERR, err_file))
            deadline = started + timeout_s
            killed_at: float | None = None
            while selector.get_map():
                for key, _ in selector.select(timeout=0.1):
                    stream, sink = key.data
                    chunk = os.read(key.fd, READ_CHUNK)
                    if not chunk:
                        selector.unregister(key.fd)
                        os.close(key.fd)
                        continue
                    sink.write(chunk)
                    if on_output is not None:
                        on_output(stream, chunk)
                now = time.monotonic()
                if finished.done():
                    # The command is gone; whatever it left running must not hold the pipes.
                    kill_group(pid, signal.SIGKILL)
                elif stopped_by is None and (now >= deadline or (cancel and cancel.is_set())):
                    stopped_by = ExitReason.TIMEOUT if now >= deadline else ExitReason.CANCELLED
                    kill_group(pid, signal.SIGTERM)
                    killed_at = now
                elif killed_at is not None and now - killed_at >= self.kill_grace_s:
                    kill_group(pid, signal.SIGKILL)
        status = finished.result()
        return self._outcome(status, stopped_by, time.monotonic() - started, paths)

    @staticmethod
    def _outcome(
        status: int, stopped_by: ExitReason | None, duration: float, paths: dict[Stream, Path]
    ) -> RunOutcome:
        code = os.waitstatus_to_exitcode(status)
        sig = -code if code < 0 else None
        if stopped_by is ExitReason.TIMEOUT:
            exit_code, reason = TIMEOUT_EXIT_CODE, ExitReason.TIMEOUT
        elif sig is not None:
            exit_code, reason = 128 + sig, stopped_by or ExitReason.SIGNALED
        elif stopped_by is ExitReason.CANCELLED:
            exit_code, reason = code, ExitReason.CANCELLED
        else:
            exit_code = code
            reason = ExitReason.COMPLETED if code == 0 else ExitReason.ERROR
        return RunOutcome(
            exit_code=exit_code,
            reason=reason,
            duration_s=round(duration, 4),
            stdout_path=paths[Stream.STDOUT],
            stderr_path=paths[Stream.STDERR],
            signal=sig,
        )
