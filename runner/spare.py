"""A child of the template process forked before its request arrives.

Forking a process that holds Zyra's whole scientific stack copies its page tables: 5 to 25
ms, and exiting tears them down again. The template process therefore keeps one child
forked ahead (a spare), waiting on a socket of its own with nothing of any job yet.
A request is handed to it (the command's stdout, stderr and the request in a memory
file, as the template received them); from then on it is that command's process,
confined exactly as a child forked on demand would be (runner/child.py). When the
command is done it closes its output and reports its exit code on the same socket
before it exits, so the caller does not wait for the teardown either.

Protocol on the spare's SOCK_SEQPACKET socketpair:
  template → spare   b"run" + 3 fds (stdout, stderr, request file)
  spare → template   b"ok": it has the command (a spare killed while waiting never
                     says so, and the template gives the command to another)
  spare → template   struct "i": the exit code, once the output is complete
EOF from the template (it went away, or retires the spare) ends the spare at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from runner.child import EXIT_CODE, ChildRequest, become_command, die_with_parent
from runner.lean_template import prefault_heap
from runner.sandbox import SandboxReport
from runner.written_pages import WrittenPages
from runner.zygote_requests import REQUEST_FDS, read_request

RUN = b"run"
TAKEN = b"ok"
TAKE_TIMEOUT_S = 5.0  # a spare that is alive answers at once


@dataclass
class Spare:
    """The template's side of a spare: its pid and its end of the socket."""

    pid: int
    sock: socket.socket

    @classmethod
    def fork(
        cls,
        sandbox: SandboxReport,
        close_in_child: Callable[[], None],
        prefault: bool = False,
        written: WrittenPages | None = None,
    ) -> Spare:
        """Fork a spare; `close_in_child` drops what the template holds that a command
        must not (clients, the listener, other commands' sockets). `prefault`: it maps
        malloc's heap while it waits (runner/lean_template.py), and copies the
        `written` pages (runner/written_pages.py)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            close_in_child()
            _wait_and_run(theirs, sandbox, prefault, written)
        theirs.close()
        return cls(pid, ours)

    def hand(self, stdout_fd: int, stderr_fd: int, request_fd: int) -> None:
        """Give the spare its command; OSError if it did not take it (it is gone)."""
        socket.send_fds(self.sock, [RUN], [stdout_fd, stderr_fd, request_fd])
        self.sock.settimeout(TAKE_TIMEOUT_S)
        try:
            if self.sock.recv(len(TAKEN)) != TAKEN:
                raise ConnectionResetError(f"spare {self.pid} ended before taking the command")
        finally:
            self.sock.settimeout(None)

    def exit_code(self) -> int | None:
        """The code the command reported (call when the socket is readable); None if it
        ended without one (killed, or crashed before it could say)."""
        try:
            data = self.sock.recv(EXIT_CODE.size)
        except OSError:
            return None
        return EXIT_CODE.unpack(data)[0] if len(data) == EXIT_CODE.size else None

    def retire(self) -> None:
        self.sock.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def _wait_and_run(
    sock: socket.socket, sandbox: SandboxReport, prefault: bool, written: WrittenPages | None
) -> NoReturn:
    try:
        die_with_parent()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        if prefault:
            prefault_heap()
            if written is not None:
                written.copy_ahead()
        message, fds, _, _ = socket.recv_fds(sock, 64, REQUEST_FDS)
        if message != RUN or len(fds) != REQUEST_FDS:
            os._exit(0)  # the template went away (or retires us) before giving work
        stdout_fd, stderr_fd, request_fd = fds
        request = ChildRequest.model_validate_json(read_request(request_fd))
        os.close(request_fd)
        sock.send(TAKEN)
    except BaseException:
        os._exit(1)  # the template checked the request: this is not expected
    become_command(request, stdout_fd, stderr_fd, sandbox, report=sock)
