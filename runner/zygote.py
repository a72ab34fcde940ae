"""The template process: Zyra imported once, a fork per command.

Importing Zyra and its scientific stack costs most of a second; forking a
process that already has them costs milliseconds. The API starts this process
once (with a scrubbed environment, so not even /proc/<pid>/environ of a command
shows the API's secrets) and asks it over a Unix socket to fork a child per
command, passing the child's stdout/stderr pipes as file descriptors.

Protocol (SOCK_SEQPACKET, one JSON message per packet):
  server → client  {"ready": true}                       once, after preloading
  client → server  {"id", "request": ChildRequest} + 2 fds (stdout, stderr)
  server → client  {"id", "pid"}                         the child is running
  server → client  {"id", "status"}                      its raw wait status
  server → client  {"id", "error"}                       the fork failed
The server exits when the client closes its end.

The stdlib forkserver start method does the same with pickles but inherits the
caller's environment and gives no way to hand a child its own stdio.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import socket
import sys
import tempfile

from runner.child import ChildRequest, become_command, run_zyra

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
MAX_MESSAGE = 1 << 20


def preload(modules: tuple[str, ...] = PRELOAD_MODULES) -> list[str]:
    """Import what can be imported; a missing optional stack only costs speed."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an optional extra may be absent
            failed.append(f"{name}: {exc}")
    return failed


def warm_up() -> None:
    """Render one tiny heatmap so fonts, colormaps and caches are loaded before
    the fork instead of in every child. Its output is discarded."""
    import numpy as np

    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            np.save(os.path.join(tmp, "warm.npy"), np.zeros((4, 4)))
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            run_zyra(
                ["visualize", "heatmap", "--input", os.path.join(tmp, "warm.npy"),
                 "--output", os.path.join(tmp, "warm.png"), "--width", "64", "--height", "32",
                 "--no-coastline", "--no-borders", "--no-gridlines"]
            )  # fmt: skip
    except Exception:  # warming is an optimisation only
        pass
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _send(sock: socket.socket, message: dict) -> None:
    with contextlib.suppress(OSError):
        sock.send(json.dumps(message).encode())


def serve(sock: socket.socket) -> None:
    """Fork a child per request until the client goes away."""
    failed = preload()
    warm_up()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    children: dict[int, str] = {}
    _send(sock, {"ready": True, "preload_failed": failed})
    while True:
        readable, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_r, 512):
                    pass
            _reap(sock, children)
        if sock in readable:
            message, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 2)
            if not message:
                break
            _fork_child(sock, json.loads(message), fds, children, (wake_r, wake_w))
    # The client is gone: its commands have nobody to report to.
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _fork_child(
    sock: socket.socket,
    message: dict,
    fds: list[int],
    children: dict[int, str],
    wake: tuple[int, int],
) -> None:
    job = message["id"]
    try:
        request = ChildRequest.model_validate(message["request"])
        if len(fds) != 2:
            raise ValueError(f"expected 2 descriptors, got {len(fds)}")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
    except Exception as exc:
        for fd in fds:
            os.close(fd)
        _send(sock, {"id": job, "error": f"{type(exc).__name__}: {exc}"})
        return
    if pid == 0:
        signal.set_wakeup_fd(-1)
        sock.close()
        for fd in wake:
            os.close(fd)
        become_command(request, fds[0], fds[1])
    for fd in fds:
        os.close(fd)
    children[pid] = job
    _send(sock, {"id": job, "pid": pid})


def _reap(sock: socket.socket, children: dict[int, str]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        job = children.pop(pid, None)
        if job is not None:
            _send(sock, {"id": job, "status": status})


def main() -> None:
    fd = int(sys.argv[1])
    sock = socket.socket(fileno=fd)
    serve(sock)


if __name__ == "__main__":
    main()
