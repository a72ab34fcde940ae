"""Run one command in an isolated child and capture what it writes.

`CommandExecutor.run` forks the command from the template process (zygote.py),
reads its stdout and stderr separately as they are written (into files, and to
an optional callback for live streaming), enforces the timeout by killing the
child's whole process group, and reports the exit code with its Unix meaning:

- the command's own code (SystemExit or return value);
- 1 with the traceback on stderr for an uncaught exception;
- 128+N when killed by signal N (137 for SIGKILL, e.g. out of memory);
- 124 when the timeout ran out (as GNU `timeout` reports it);
- 137 when a quota was exceeded (runner/quotas.py; reason DiskQuotaExceeded or
  LogLimitExceeded).
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
from typing import Any, Protocol

from runner.child import EXIT_CODE, ChildRequest, become_command
from runner.lifecycle import ExitReason
from runner.outputs import looks_binary
from runner.quotas import CHECK_INTERVAL_S, RunQuotas, disk_usage
from runner.reaper import children, reap_strays
from runner.sandbox import SandboxPolicy, SandboxReport
from runner.warm_runner import RunnerRequest
from runner.zygote_requests import request_file, send_request

TIMEOUT_EXIT_CODE = 124
READ_CHUNK = 64 * 1024


QUOTA_REASONS = frozenset({ExitReason.DISK_QUOTA, ExitReason.LOG_LIMIT})
QUOTA_EXIT_CODE = 128 + signal.SIGKILL


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

    @property
    def over_quota(self) -> bool:
        """Stopped for a quota: nothing it wrote is kept."""
        return self.reason in QUOTA_REASONS


SYNC_EXECUTOR = "sync executor"  # the dependency named when sync runs cannot start
RECONNECT_DELAY_S = 0.5
RECONNECT_TIMEOUT_S = 10.0


class ExecutorUnavailableError(RuntimeError):
    """The template process (or the sync executor) could not be started, refused, or died."""


class _NotListening(OSError):
    """Nothing (yet) answers at the sync executor's socket."""


class Spawner(Protocol):
    sandbox: SandboxReport | None  # what confinement this spawner's children get

    def spawn(
        self, request: ChildRequest, stdout_fd: int, stderr_fd: int
    ) -> tuple[int, Future[int]]:
        """Start a child running the command; its pid and a future of its wait status."""
        ...

    def kill(self, pid: int, sig: int) -> None:
        """Signal the process group of a child this spawner started."""
        ...


class ForkSpawner:
    """Forks the command straight from this process: for a runner that runs one command.
    The runner is a subreaper (runner.reaper), so what the command leaves behind comes
    back to it and is killed once the command has exited."""

    def __init__(self, sandbox: SandboxReport, early_report: bool = False) -> None:
        """`early_report`: the command's exit code counts as soon as it says it (its
        output complete, what it started killed), before its process has exited; the
        wait for it and the backstop that kills strays go on in the background. Only
        for a process that forks nothing else meanwhile (a runner): the backstop kills
        any child that is not one of this process's when the command started."""
        self.sandbox = sandbox
        self.early_report = early_report

    def spawn(
        self, request: ChildRequest, stdout_fd: int, stderr_fd: int
    ) -> tuple[int, Future[int]]:
        sys.stdout.flush()
        sys.stderr.flush()
        others = set(children())  # not the command's: never strays
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            become_command(request, stdout_fd, stderr_fd, self.sandbox, report=theirs)
        theirs.close()
        finished: Future[int] = Future()

        def wait() -> None:
            # The exit code as soon as the output is complete (runner/child.py); the
            # teardown of the child, a copy of this warm process, is not waited for.
            with ours:
                report = ours.recv(EXIT_CODE.size)
            if self.early_report and len(report) == EXIT_CODE.size:
                finished.set_result((EXIT_CODE.unpack(report)[0] & 0xFF) << 8)
            status = os.waitpid(pid, 0)[1]
            reap_strays(keep=others)
            if not finished.done():  # it ended without saying (killed): its wait status
                finished.set_result(status)

        threading.Thread(target=wait, daemon=True).start()
        return pid, finished

    def kill(self, pid: int, sig: int) -> None:
        kill_group(pid, sig)


@dataclass
class _Pending:
    started: Future[int]
    finished: Future[int]
    pid: int | None = None


class Zygote:
    """Client side of the template process; safe to share between threads.

    Embedded (no `socket_path`): it starts its own template process, with `env` as
    the whole environment, and starts another when that one dies. With `socket_path`
    (the sync executor in a container of its own, `python -m runner.zygote --listen`)
    it connects there instead, and when the connection drops it reconnects in the
    background; meanwhile `spawn` raises and `unavailable()` says why."""

    def __init__(
        self,
        env: dict[str, str],
        sandbox: SandboxPolicy,
        start_timeout_s: float = 120.0,
        socket_path: Path | None = None,
    ) -> None:
        self._env = env
        self._policy = sandbox
        self.sandbox: SandboxReport | None = None  # what the template process found
        self.hello: dict[str, Any] = {}  # all it said when ready (runner/zygote.py)
        self._start_timeout_s = start_timeout_s
        self._socket_path = socket_path
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._pending: dict[str, _Pending] = {}
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._down: str | None = "not connected yet"  # why the executor cannot be used
        self._closed = False

    def start(self) -> None:
        """Start the template process, or wait up to the start timeout for the executor's
        socket to appear and say ready; raises ExecutorUnavailableError."""
        if self._socket_path is None:
            with self._lock:
                self._ensure_running()
            return
        deadline = time.monotonic() + self._start_timeout_s
        while True:
            try:
                sock, hello = self._dial(max(0.1, deadline - time.monotonic()))
                break
            except _NotListening as exc:
                if time.monotonic() >= deadline:
                    raise ExecutorUnavailableError(
                        f"{SYNC_EXECUTOR} at {self._socket_path} not ready after "
                        f"{self._start_timeout_s:g}s: {exc}"
                    ) from exc
                time.sleep(RECONNECT_DELAY_S)
            except ExecutorUnavailableError as exc:
                raise ExecutorUnavailableError(
                    f"{SYNC_EXECUTOR} at {self._socket_path}: {exc}"
                ) from exc
        with self._lock:
            self._adopt(sock, hello)

    def unavailable(self) -> str | None:
        """Why sync runs cannot start now (the executor's connection is down), or None.
        The embedded template process is started again on demand: never down."""
        if self._socket_path is None:
            return None
        with self._lock:
            return None if self._sock is not None else f"{self._socket_path}: {self._down}"

    def _ensure_running(self) -> socket.socket:
        if self._sock is not None and (self._proc is None or self._proc.poll() is None):
            return self._sock
        if self._socket_path is not None:
            raise ExecutorUnavailableError(f"{self._socket_path}: {self._down}")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "runner.zygote", str(theirs.fileno()),
             self._policy.model_dump_json()],
            pass_fds=[theirs.fileno()],
            env=self._env,
            stdin=subprocess.DEVNULL,
            cwd="/",
        )  # fmt: skip
        theirs.close()
        ours.settimeout(self._start_timeout_s)
        try:
            hello = json.loads(ours.recv(1 << 16) or b"{}")
        except (TimeoutError, json.JSONDecodeError) as exc:
            self._proc.kill()
            raise ExecutorUnavailableError(f"template process did not start: {exc}") from exc
        if not hello.get("ready"):
            raise ExecutorUnavailableError(
                "template process did not start: " + hello.get("error", "it exited")
            )
        return self._adopt(ours, hello)

    def _dial(self, timeout_s: float) -> tuple[socket.socket, dict[str, Any]]:
        """One attempt at the executor's socket: the connection and its hello."""
        assert self._socket_path is not None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(self._socket_path))
            hello = json.loads(sock.recv(1 << 16) or b"{}")
        except (OSError, json.JSONDecodeError) as exc:
            sock.close()
            raise _NotListening(f"{type(exc).__name__}: {exc}") from exc
        if not hello.get("ready"):
            sock.close()
            raise ExecutorUnavailableError(
                "refused: " + hello.get("error", "it closed the connection")
            )
        return sock, hello

    def _adopt(self, sock: socket.socket, hello: dict[str, Any]) -> socket.socket:
        """Use a connection that said ready (the lock is held)."""
        self.sandbox = SandboxReport.model_validate(hello["sandbox"])
        self.hello = hello
        sock.settimeout(None)
        self._sock, self._down = sock, None
        threading.Thread(target=self._read_replies, args=(sock,), daemon=True).start()
        return sock

    def _reconnect(self) -> None:
        """Dial the executor until it answers again (a restarted container) or close()."""
        while not self._closed:
            try:
                sock, hello = self._dial(RECONNECT_TIMEOUT_S)
            except (_NotListening, ExecutorUnavailableError) as exc:
                with self._lock:
                    self._down = str(exc)
                time.sleep(RECONNECT_DELAY_S)
                continue
            with self._lock:
                if self._closed:
                    sock.close()
                else:
                    self._adopt(sock, hello)
            return

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
                pending = self._pending.get(reply["id"])
                if pending is None:
                    continue
                if "error" in reply:
                    self._pending.pop(reply["id"])
                    pending.started.set_exception(ExecutorUnavailableError(reply["error"]))
                elif "pid" in reply:
                    pending.pid = reply["pid"]
                    pending.started.set_result(reply["pid"])
                elif "status" in reply:
                    self._pending.pop(reply["id"])
                    pending.finished.set_result(reply["status"])
        with self._lock:
            lost_connection = self._sock is sock  # else close() ended it
            if lost_connection:
                self._sock, self._down = None, "the connection was lost"
            lost, self._pending = self._pending, {}
            reconnect = lost_connection and self._socket_path is not None and not self._closed
        sock.close()
        gone = f"{self._socket_path}: the connection was lost" if self._socket_path else ""
        for pending in lost.values():
            for fut in (pending.started, pending.finished):
                if not fut.done():
                    fut.set_exception(ExecutorUnavailableError(gone or "template process exited"))
        if reconnect:
            threading.Thread(target=self._reconnect, daemon=True).start()

    def spawn(
        self, request: ChildRequest, stdout_fd: int, stderr_fd: int
    ) -> tuple[int, Future[int]]:
        """Start a child; returns its pid and a future of its raw wait status."""
        job = str(next(self._ids))
        pending = _Pending(Future(), Future())
        # In a file of its own, not the packet: arguments may be longer than a packet holds.
        request_fd = request_file(json.dumps(request.model_dump()).encode())
        try:
            with self._lock:
                sock = self._ensure_running()
                self._pending[job] = pending
                try:
                    send_request(sock, job, request_fd, stdout_fd, stderr_fd)
                except OSError as exc:
                    self._pending.pop(job)
                    raise ExecutorUnavailableError(
                        f"{self._socket_path or 'template process'}: {exc}"
                    ) from exc
        finally:
            os.close(request_fd)  # the template process holds its own copy now
        return pending.started.result(timeout=30), pending.finished

    @property
    def busy(self) -> int:
        """Commands and runners handed over and not finished yet."""
        with self._lock:
            return len(self._pending)

    @property
    def starts_runners(self) -> bool:
        """Whether it can fork runners (runner/warm_runner.py): the API's own template
        process can, a sync executor never does."""
        return self._socket_path is None

    def spawn_runner(self, request: RunnerRequest, log_fd: int) -> tuple[int, Future[int]]:
        """Fork a runner with its stdout and stderr into `log_fd`; its pid and a future of
        its raw wait status (ExecutorUnavailableError if the template process goes first:
        the runner itself lives on)."""
        job = str(next(self._ids))
        pending = _Pending(Future(), Future())
        request_fd = request_file(request.model_dump_json().encode())
        try:
            with self._lock:
                sock = self._ensure_running()
                self._pending[job] = pending
                try:
                    socket.send_fds(
                        sock, [json.dumps({"id": job, "runner": True}).encode()],
                        [log_fd, log_fd, request_fd],
                    )  # fmt: skip
                except OSError as exc:
                    self._pending.pop(job)
                    raise ExecutorUnavailableError(f"template process: {exc}") from exc
        finally:
            os.close(request_fd)
        return pending.started.result(timeout=30), pending.finished

    def kill(self, pid: int, sig: int) -> None:
        """Signal a running command's process group, through the process that forked it:
        the pid may belong to another container's pid namespace."""
        with self._lock:
            running = any(p.pid == pid and not p.finished.done() for p in self._pending.values())
            if self._sock is None or not running:
                return  # finished: the template process has killed what it left
            with contextlib.suppress(OSError):
                self._sock.send(json.dumps({"kill": pid, "signal": int(sig)}).encode())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sock, self._sock = self._sock, None
            proc = self._proc
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the other end sees us go at once
            sock.close()
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


class QuotaMeter:
    """Counts what a command prints and, every CHECK_INTERVAL_S, what its folders hold."""

    def __init__(self, quotas: RunQuotas, folders: list[str]) -> None:
        self.quotas, self.folders = quotas, folders
        self.text_bytes = 0
        self.binary_stdout_bytes = 0
        self.stdout_binary: bool | None = None  # decided by the first stdout chunk
        self._next_check = 0.0

    def add_output(self, stream: Stream, chunk: bytes) -> ExitReason | None:
        if stream is Stream.STDOUT and self.stdout_binary is None:
            self.stdout_binary = looks_binary(chunk)
        if stream is Stream.STDOUT and self.stdout_binary:
            self.binary_stdout_bytes += len(chunk)  # becomes an output file: disk
            limit = self.quotas.disk_bytes
            return ExitReason.DISK_QUOTA if limit and self.binary_stdout_bytes > limit else None
        self.text_bytes += len(chunk)
        limit = self.quotas.log_bytes
        return ExitReason.LOG_LIMIT if limit and self.text_bytes > limit else None

    def check_disk(self, now: float) -> ExitReason | None:
        limit = self.quotas.disk_bytes
        if not limit or now < self._next_check:
            return None
        self._next_check = now + CHECK_INTERVAL_S
        used = disk_usage(self.folders) + self.binary_stdout_bytes
        return ExitReason.DISK_QUOTA if used > limit else None


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
        quotas: RunQuotas | None = None,
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
        meter = QuotaMeter(quotas or RunQuotas(log_bytes=None, disk_bytes=None), request.writable)
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
                    if stopped_by in QUOTA_REASONS:
                        continue  # drained, not kept: the command is being killed
                    over = meter.add_output(stream, chunk)
                    if over is not None:
                        stopped_by = over
                        self.spawner.kill(pid, signal.SIGKILL)
                        continue
                    sink.write(chunk)
                    if on_output is not None:
                        on_output(stream, chunk)
                now = time.monotonic()
                over = meter.check_disk(now) if stopped_by is None else None
                if over is not None:
                    stopped_by = over
                    self.spawner.kill(pid, signal.SIGKILL)
                elif finished.done():
                    # The command is gone; whatever it left running must not hold the pipes.
                    self.spawner.kill(pid, signal.SIGKILL)
                elif stopped_by is None and (now >= deadline or (cancel and cancel.is_set())):
                    stopped_by = ExitReason.TIMEOUT if now >= deadline else ExitReason.CANCELLED
                    self.spawner.kill(pid, signal.SIGTERM)
                    killed_at = now
                elif killed_at is not None and now - killed_at >= self.kill_grace_s:
                    self.spawner.kill(pid, signal.SIGKILL)
        if stopped_by is None:
            stopped_by = meter.check_disk(float("inf"))  # what it wrote in its last moments
        status = finished.result()
        return self._outcome(status, stopped_by, time.monotonic() - started, paths)

    @staticmethod
    def _outcome(
        status: int, stopped_by: ExitReason | None, duration: float, paths: dict[Stream, Path]
    ) -> RunOutcome:
        code = os.waitstatus_to_exitcode(status)
        sig = -code if code < 0 else None
        if stopped_by in QUOTA_REASONS:
            exit_code, reason = QUOTA_EXIT_CODE, stopped_by
        elif stopped_by is ExitReason.TIMEOUT:
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
