"""The template process: Zyra imported once, a fork per command.

Importing Zyra and its scientific stack costs most of a second; forking a
process that already has them costs milliseconds. Two ways to run it:

- `python -m runner.zygote <fd> <policy-json>`: the API's own (the embedded
  default), started with a scrubbed environment over a socketpair; it exits when
  the API closes its end.
- `python -m runner.zygote --listen PATH`: the sync executor, in a container of
  its own (no Secrets, no ServiceAccount token, another uid). It binds a Unix
  socket at PATH (mode 0660: the pod's group may connect) and serves every
  process that connects (each Gunicorn worker of the API is one client). Its
  sandbox policy comes from its own environment (`SandboxPolicy.from_env`); each
  request still carries the API's, never weaker than its own. On SIGTERM it
  stops taking work and exits once its running commands are done.

Either way a command's initial environment (/proc/<pid>/environ) is this
process's, which holds no secret. It is a subreaper (runner/reaper.py): anything
a finished command left behind, `setsid()` or not, comes back to it and is
killed. It is not dumpable, single-threaded, and each child confines itself
(runner/sandbox.py) with what `probe` found at start-up.

Protocol (SOCK_SEQPACKET, one JSON message per packet):
  server → client  {"ready": true, "sandbox": report}    once per client, after preloading
  server → client  {"ready": false, "error"}             sandbox required, not possible
  client → server  {"id"} + 3 fds (stdout, stderr, a memory file holding the
                   ChildRequest as JSON: runner/zygote_requests.py; a packet would
                   bound its size)
  client → server  {"id", "runner": true} + 3 fds (the log twice, a memory file holding
                   a RunnerRequest: runner/warm_runner.py): fork a runner (the API's
                   own template process only; a sync executor answers an error)
  client → server  {"kill": pid, "signal": n}            signal a running command's group
  server → client  {"id", "pid"}                         the child is running
  server → client  {"id", "status"}                      its raw wait status
  server → client  {"id", "error"}                       the fork failed
A client's commands are killed when it closes its end. Pids are this process's:
in another container they name nothing, hence the kill message.

The stdlib forkserver start method does the same with pickles but inherits the
caller's environment and gives no way to hand a child its own stdio.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import zyra_parsers
from runner.child import ChildRequest
from runner.lean_template import (
    collapse_heap,
    keep_freed_memory,
    single_threaded_blas,
    usable_cpus,
)
from runner.reaper import become_subreaper, kill_strays
from runner.sandbox import (
    SandboxMode,
    SandboxPolicy,
    SandboxReport,
    SandboxUnavailableError,
    keep_for_forks,
    make_non_dumpable,
    probe,
    require,
)
from runner.spare import Spare
from runner.warm_runner import become_runner
from runner.warm_up import warm_up
from runner.written_pages import WrittenPages, learn
from runner.zygote_requests import REQUEST_FDS, read_request, request_file

# Modules worth having in memory before the fork: Zyra's CLI wiring for every
# stage and the libraries its commands import on first use.
PRELOAD_MODULES = (
    "zyra.cli",
    "zyra.pipeline_runner",
    "zyra.connectors.ingest",
    "zyra.connectors.egress",
    "zyra.connectors.discovery",
    "zyra.processing",
    "zyra.transform",
    "zyra.visualization.cli_register",
    "zyra.visualization.heatmap_manager",
    "zyra.visualization.timeseries_manager",
    "zyra.visualization.contour_manager",
    "zyra.processing.grib_utils",
    "zyra.processing.netcdf_data_processor",
    "numpy",
    "xarray",
    "netCDF4",
    "cfgrib",
    "matplotlib.pyplot",
    "cartopy.crs",
)
# What a runner imports (runner/__main__.py): in memory before the runners fork.
RUNNER_MODULES = ("runner.__main__",)
MAX_MESSAGE = 1 << 20
SOCKET_MODE = 0o660  # the pod's group (the API's uid) may connect; others may not
SEND_TIMEOUT_S = 10.0  # a client that stops reading is dropped, not waited for
REFUSAL_LINGER_S = 5.0  # how long a refusing executor tells connecting clients why
STRICTNESS = {SandboxMode.OFF: 0, SandboxMode.BEST_EFFORT: 1, SandboxMode.REQUIRED: 2}
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


def preload(modules: tuple[str, ...] = PRELOAD_MODULES) -> list[str]:
    """Import what can be imported; a missing optional stack only costs speed."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an optional extra may be absent
            failed.append(f"{name}: {exc}")
    return failed


def _send(sock: socket.socket, message: dict[str, Any]) -> bool:
    try:
        sock.send(json.dumps(message).encode())
    except OSError:
        return False
    return True


def _log(message: str) -> None:
    print(f"zyra sync executor: {message}", file=sys.stderr, flush=True)


def _is_ours(pid: int) -> bool:
    """Whether `pid` descends from this process: one of our commands, or something it
    started. A peer in another pid namespace (the API's container) shows as pid 0."""
    me = os.getpid()
    while pid > 0:
        if pid == me:
            return True
        if pid == 1:  # the top of our namespace, and not us
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True  # gone already: not to be trusted
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


@dataclass
class Command:
    job: str
    client: socket.socket | None  # None once the client has gone
    process: Spare | None  # None: a runner, which reports nothing before it exits
    listening: bool = True  # for the exit code it reports on its socket
    reported: bool = False  # its exit code has gone to the client
    detached: bool = False  # a runner: it outlives its client and this process


class TemplateServer:
    """Forks a child per request of any connected client; reports to that client."""

    def __init__(
        self,
        sandbox: SandboxReport,
        floor: SandboxMode,
        hello: dict[str, Any],
        runners: bool = False,
        written: WrittenPages | None = None,
    ) -> None:
        """`runners`: clients may ask for runners (runner/warm_runner.py). Only the API's
        own template process, whose one client is the API, allows it: a runner is not
        confined. `written`: what a spare forked ahead copies (runner/written_pages.py)."""
        self.sandbox, self.floor, self.hello = sandbox, floor, hello
        self.written = written
        self.runners = runners
        self.listener: socket.socket | None = None
        self.listener_inode: int | None = None
        self.clients: list[socket.socket] = []
        self.commands: dict[int, Command] = {}
        self.spare: Spare | None = None  # the next command's process, forked ahead
        self.cpus = usable_cpus()
        self.stopping = False
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)

    def listen(self, path: Path) -> None:
        """Serve whoever connects at `path`; SIGTERM stops taking work."""
        self.listener = bind(path)
        self.listener_inode = path.stat().st_ino
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))

    def add_client(self, sock: socket.socket) -> None:
        sock.settimeout(SEND_TIMEOUT_S)
        if _send(sock, self.hello):
            self.clients.append(sock)
        else:
            sock.close()

    def run(self) -> None:
        while self.clients or self.listener is not None:
            if self.spare is None and not self.stopping:
                self.spare = self._fork_spare()
            reporting = [
                c.process.sock for c in self.commands.values() if c.process and c.listening
            ]
            watched = [*self.clients, self.wake_r, *reporting,
                       *([self.listener] if self.listener else [])]  # fmt: skip
            readable, _, _ = select.select(watched, [], [])
            if self.wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 512):
                        pass
                self._reap()
            if self.listener is not None and self.listener in readable:
                self._accept()
            for pid, command in list(self.commands.items()):
                if command.process and command.listening and command.process.sock in readable:
                    self._done(pid, command)
            for client in [c for c in self.clients if c in readable]:
                self._receive(client)
            if self.stopping:
                self._stop_listening()
                if not self.commands:
                    break
        # Nobody is left to report to: no command outlives this process (runners do).
        for pid, command in self.commands.items():
            if not command.detached:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        if self.spare is not None:
            self.spare.retire()
        self._stop_listening()

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()  # type: ignore[union-attr]
        except OSError:
            return
        pid, _, _ = _PEERCRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
        if _is_ours(pid):
            # A command must not ask for commands of its own (with a weaker sandbox).
            _send(conn, {"ready": False, "error": "commands may not use the executor"})
            conn.close()
            return
        self.add_client(conn)

    def _receive(self, client: socket.socket) -> None:
        try:
            message, fds, _, _ = socket.recv_fds(client, MAX_MESSAGE, REQUEST_FDS)
        except OSError:
            message, fds = b"", []
        if not message:
            self._drop(client)
            return
        try:
            request = json.loads(message)
            if "kill" in request:
                self._signal(client, int(request["kill"]), int(request["signal"]))
            elif request.get("runner"):
                self._fork_runner(client, request, fds)
                fds = []
            else:
                self._fork_child(client, request, fds)
                fds = []
        except (ValueError, KeyError, TypeError) as exc:  # not our protocol: goodbye
            _log(f"dropped a client that sent {type(exc).__name__}: {exc}")
            self._drop(client)
        finally:
            for fd in fds:
                os.close(fd)

    def _signal(self, client: socket.socket, pid: int, sig: int) -> None:
        command = self.commands.get(pid)
        if command is not None and command.client is client:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)

    def _fork_child(self, client: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
        """Give the request to the spare (forked now if there is none)."""
        job = str(message["id"])
        try:
            if self.stopping:
                raise RuntimeError("the sync executor is stopping")
            if len(fds) != REQUEST_FDS:
                raise ValueError(
                    f"expected {REQUEST_FDS} descriptors (stdout, stderr, request), got {len(fds)}"
                )
            request = ChildRequest.model_validate(json.loads(read_request(fds[2])))
            if STRICTNESS[request.sandbox.mode] < STRICTNESS[self.floor]:
                request.sandbox = request.sandbox.model_copy(update={"mode": self.floor})
            process = self._hand_over(fds[0], fds[1], request)
        except Exception as exc:
            self._reply(client, {"id": job, "error": f"{type(exc).__name__}: {exc}"})
            return
        finally:
            for fd in fds:
                os.close(fd)
        self.commands[process.pid] = Command(job, client, process)
        self._reply(client, {"id": job, "pid": process.pid})

    def _fork_runner(self, client: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
        """Fork a runner (runner/warm_runner.py); its log is the first descriptor."""
        job = str(message["id"])
        try:
            if not self.runners:
                raise PermissionError("this executor does not start runners")
            if self.stopping:
                raise RuntimeError("the template process is stopping")
            if len(fds) != REQUEST_FDS:
                raise ValueError(f"expected {REQUEST_FDS} descriptors, got {len(fds)}")
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                self._close_in_child()
                if self.spare is not None:
                    self.spare.sock.close()
                # The request holds the runner's credentials: only the runner reads it,
                # so they never enter this process's memory, which later commands copy.
                become_runner(fds[2], fds[0])
        except Exception as exc:
            self._reply(client, {"id": job, "error": f"{type(exc).__name__}: {exc}"})
            return
        finally:
            for fd in fds:
                os.close(fd)
        self.commands[pid] = Command(job, client, None, listening=False, detached=True)
        self._reply(client, {"id": job, "pid": pid})

    def _hand_over(self, stdout_fd: int, stderr_fd: int, request: ChildRequest) -> Spare:
        """The spare that now runs `request`; one that died waiting is replaced once."""
        # A file of our own, not the client's: the client can still write to its memory
        # file, and must not change a request (its sandbox floor) after it was checked.
        request_fd = request_file(request.model_dump_json().encode())
        try:
            for attempt in range(2):
                process, self.spare = self.spare or self._fork_spare(ahead=False), None
                try:
                    process.hand(stdout_fd, stderr_fd, request_fd)
                    return process
                except OSError:
                    process.retire()
                    if attempt:
                        raise
        finally:
            os.close(request_fd)
        raise AssertionError("unreachable")

    def _fork_spare(self, ahead: bool = True) -> Spare:
        """`ahead`: forked before its request, it may use the wait to map some heap,
        which costs it CPU: only while a core is free of our commands."""
        sys.stdout.flush()
        sys.stderr.flush()
        idle_core = len(self.commands) < self.cpus
        return Spare.fork(
            self.sandbox, self._close_in_child, prefault=ahead and idle_core, written=self.written
        )

    def _close_in_child(self) -> None:
        """In a new child: nothing of the template's connections comes along."""
        signal.set_wakeup_fd(-1)
        for sock in (
            *self.clients,
            self.listener,
            *(c.process.sock for c in self.commands.values() if c.process),
        ):
            if sock is not None:
                sock.close()
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)

    def _done(self, pid: int, command: Command) -> None:
        """The command reported its exit code: the client hears it now, not after the
        process has exited (it is reaped later)."""
        assert command.process is not None  # only commands listen; runners do not
        code = command.process.exit_code()
        command.process.sock.close()
        command.listening = False
        if code is None:
            return  # it ended without saying (killed): its wait status will tell
        command.reported = True
        if command.client is not None:
            self._reply(command.client, {"id": command.job, "status": (code & 0xFF) << 8})

    def _reply(self, client: socket.socket, message: dict[str, Any]) -> None:
        if not _send(client, message):
            self._drop(client)

    def _drop(self, client: socket.socket) -> None:
        """The client is gone (or stuck): its commands have nobody to report to."""
        if client in self.clients:
            self.clients.remove(client)
        client.close()
        for pid, command in self.commands.items():
            if command.client is client:
                command.client = None
                if not command.detached:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)

    def _reap(self) -> None:
        """Report finished commands; kill what they left behind (it is ours now)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if self.spare is not None and pid == self.spare.pid:  # died waiting for work
                self.spare.retire()
                self.spare = None
                continue
            command = self.commands.pop(pid, None)
            if command is None:
                continue
            if command.process and command.listening:
                command.process.sock.close()
            if not command.reported and command.client is not None:
                self._reply(command.client, {"id": command.job, "status": status})
        # Killed strays wake us again (SIGCHLD) and are reaped above, with their orphans.
        keep = {*self.commands, *([self.spare.pid] if self.spare else [])}
        kill_strays(keep)

    def _stop_listening(self) -> None:
        if self.listener is None:
            return
        path = self.listener.getsockname()
        self.listener.close()
        self.listener = None
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == self.listener_inode:  # not a successor's socket
                os.unlink(path)


def bind(path: Path) -> socket.socket:
    """A listening socket at `path` that the pod's group may connect to. A socket left
    by an earlier run of this container is replaced."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_socket():
            path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(path))
    os.chmod(path, SOCKET_MODE)
    folder_group = path.parent.stat().st_gid
    if folder_group in os.getgroups() and folder_group != path.stat().st_gid:
        os.chown(path, -1, folder_group)  # a volume's group (fsGroup) without setgid
    listener.listen(64)
    return listener


def _prepare(policy: SandboxPolicy) -> tuple[SandboxReport, SandboxUnavailableError | None]:
    make_non_dumpable()
    become_subreaper()
    sandbox = probe(policy)
    try:
        require(sandbox)
    except SandboxUnavailableError as exc:
        return sandbox, exc
    return sandbox, None


def warm_template(modules: tuple[str, ...] = PRELOAD_MODULES) -> tuple[list[str], WrittenPages]:
    """Make this process a template: load and warm up, then settle its memory for forks.
    What failed (it only costs speed), and the pages commands write to."""
    failed = preload(modules) + zyra_parsers.prebuild() + warm_up()
    # What is here now is shared with every child: out of the collector's sight, a
    # collection in a child does not write to (and so copy) the template's pages.
    gc.collect()
    gc.freeze()
    keep_freed_memory()
    collapse_heap()
    try:
        written = learn(warm_up)  # after the last change to this process's memory
    except OSError as exc:  # it only costs speed
        failed.append(f"written pages: {exc}")
        written = WrittenPages()
    return failed, written


def _hello(sandbox: SandboxReport, failed: list[str], written: WrittenPages) -> dict[str, Any]:
    return {"ready": True, "preload_failed": failed, "written_pages": written.pages,
            "sandbox": sandbox.model_dump()}  # fmt: skip


def serve(sock: socket.socket, policy: SandboxPolicy) -> None:
    """The API's own template process: fork a child per request until it goes away."""
    sandbox, refused = _prepare(policy)
    if refused is not None:
        _send(sock, {"ready": False, "error": str(refused), "sandbox": sandbox.model_dump()})
        return
    keep_for_forks(policy, sandbox)  # the runners it forks probe no more
    failed, written = warm_template(PRELOAD_MODULES + RUNNER_MODULES)
    hello = _hello(sandbox, failed, written)
    server = TemplateServer(sandbox, policy.mode, hello, runners=True, written=written)
    server.add_client(sock)
    server.run()


def serve_socket(path: Path) -> int:
    """The sync executor: serve every client at `path`; its exit code."""
    policy = SandboxPolicy.from_env()
    sandbox, refused = _prepare(policy)
    if refused is not None:
        # Loudly, and to whoever connects meanwhile (the API shows it): then exit, so
        # that the container's restarts show it too.
        _log(f"not starting: {refused}")
        refuse(path, {"ready": False, "error": str(refused), "sandbox": sandbox.model_dump()})
        return 1
    for problem in sandbox.problems:
        _log(f"sandbox ({policy.mode.value}): {problem}")
    failed, written = warm_template()
    server = TemplateServer(sandbox, policy.mode, _hello(sandbox, failed, written), written=written)
    server.listen(path)
    _log(f"listening on {path} as uid {os.getuid()}; commands run as {sandbox.identity}, "
         f"sandbox {sandbox.level}")  # fmt: skip
    server.run()
    _log("stopped")
    return 0


def refuse(path: Path, hello: dict[str, Any], linger_s: float = REFUSAL_LINGER_S) -> None:
    """Answer every client that connects within `linger_s` with `hello`, then go."""
    listener = bind(path)
    deadline = time.monotonic() + linger_s
    with listener:
        while (left := deadline - time.monotonic()) > 0:
            if select.select([listener], [], [], left)[0]:
                conn, _ = listener.accept()
                with conn:
                    _send(conn, hello)
    with contextlib.suppress(OSError):
        path.unlink()


def main(argv: list[str]) -> int:
    single_threaded_blas()  # before the preload loads numpy
    if argv[:1] == ["--listen"] and len(argv) == 2:
        return serve_socket(Path(argv[1]))
    if len(argv) == 2 and argv[0].isdigit():
        serve(socket.socket(fileno=int(argv[0])), SandboxPolicy.model_validate_json(argv[1]))
        return 0
    print("usage: python -m runner.zygote --listen PATH  |  <fd> <policy-json>", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
