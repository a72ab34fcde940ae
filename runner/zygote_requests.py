"""How a command request reaches the template process (runner/zygote.py).

One SOCK_SEQPACKET message can hold no more than the socket's send buffer (about
208 KiB by default, `net.core.wmem_max`), and a request carries the command's
arguments, which may be longer. So the request itself travels in an unnamed
in-memory file (memfd) whose descriptor rides along with the command's stdout and
stderr (SCM_RIGHTS); the message says only which request it is. The template
process reads the file's length once, so a client cannot keep it reading.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import tempfile

# stdout, stderr, and the request: the order the descriptors travel in.
REQUEST_FDS = 3
READ_CHUNK = 1 << 20


def _memory_file() -> int:
    try:
        return os.memfd_create("zyra-request", os.MFD_CLOEXEC)
    except OSError:  # a seccomp profile without memfd_create: an unlinked temp file
        with tempfile.TemporaryFile() as spool:
            return os.dup(spool.fileno())


def request_file(payload: bytes) -> int:
    """A descriptor of a file holding `payload`; the caller closes it."""
    fd = _memory_file()
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        raise
    return fd


def send_request(
    sock: socket.socket, job: str, request_fd: int, stdout_fd: int, stderr_fd: int
) -> None:
    """Ask for a command: `{"id"}` and the descriptors, the request among them."""
    socket.send_fds(sock, [json.dumps({"id": job}).encode()], [stdout_fd, stderr_fd, request_fd])


def read_request(fd: int) -> bytes:
    """What a request file holds. Only a regular file (a memfd is one) is read, and
    only as far as its length when it arrived: a pipe or a growing file could keep
    a single-threaded server waiting."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("the request must come in a regular (memory) file")
    chunks, offset = [], 0
    while offset < info.st_size:
        chunk = os.pread(fd, min(READ_CHUNK, info.st_size - offset), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)
