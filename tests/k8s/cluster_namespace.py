"""The test cluster's own network, mount and PID namespaces, and the daemons run in them.

One holder process (`unshare`) owns the namespaces; its child, a reaping init, is PID 1 of
the new PID namespace. Every daemon enters all three with `nsenter`. The PID namespace is
what makes stopping certain: when its init dies the kernel kills every process inside,
containerd's shims and the containers included, and with the last process the network
namespace (interfaces, iptables rules) and the mount namespace (every mount made inside)
go too. If pytest itself is killed, PR_SET_PDEATHSIG (SIGKILL: unshare blocks SIGTERM
while it waits) on `unshare` and its --kill-child do the same.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """preexec_fn: have the kernel send `sig` to the child if the test process dies first."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG


def start_node_daemon(sig: int = signal.SIGTERM) -> None:
    """preexec_fn of the cluster's own processes: umask 022, as systemd starts them, not
    whatever the test process has (an in-process API sets 077; containerd would then make
    every container's root directory 0700, and no non-root container could start), and
    `sig` if the test process dies first."""
    os.umask(0o022)
    die_with_parent(sig)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return []


def processes_in(namespace_inode: int, kinds: tuple[str, ...] = ("net", "mnt", "pid")) -> list[int]:
    """PIDs (as seen here) of every process in a namespace with that inode."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        for kind in kinds:
            try:
                if (entry / "ns" / kind).stat().st_ino == namespace_inode:
                    found.append(int(entry.name))
                    break
            except OSError:  # exited meanwhile, or a kernel thread
                continue
    return found


@dataclass
class Daemon:
    """A long-running process inside the namespaces. `process` is its nsenter parent
    (which forks to enter the PID namespace, and does not forward signals)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int | None:
        """The daemon's own PID as seen from the test process."""
        children = _children(self.process.pid)
        return children[0] if children else None

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: int) -> None:
        if (pid := self.pid) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


class ClusterNamespace:
    """Private net + mount + PID namespaces held by `init` (a binary that reaps children
    and waits; the pause binary does)."""

    def __init__(self, folder: Path, init: str, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.init = init
        self.env = env or dict(os.environ)
        self.holder: subprocess.Popen[bytes] | None = None
        self.init_pid = 0
        self.inodes: dict[str, int] = {}
        self.daemons: dict[str, Daemon] = {}

    @property
    def netns(self) -> Path:
        return Path(f"/proc/{self.init_pid}/ns/net")

    def start(self, setup_script: str, timeout: float = 20) -> None:
        """Create the namespaces, then run `setup_script` (sh) inside them."""
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "holder.log").open("ab")
        self.holder = subprocess.Popen(
            ["unshare", "--fork", "--kill-child", "--pid", "--mount-proc", "--net", "--mount",
             "--propagation", "private", self.init],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=lambda: start_node_daemon(signal.SIGKILL),
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        # Ready once unshare's child has exec'd init (after unsharing and mounting /proc).
        while not self.init_pid:
            if self.holder.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "unshare failed: " + (self.folder / "holder.log").read_text(errors="replace")
                )
            for child in _children(self.holder.pid):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{child}/exe") == os.path.realpath(self.init):
                        self.init_pid = child
            time.sleep(0.01)
        self.inodes = {
            kind: Path(f"/proc/{self.init_pid}/ns/{kind}").stat().st_ino
            for kind in ("net", "mnt", "pid")
        }
        done = self.run(["sh", "-euc", setup_script])
        if done.returncode != 0:
            raise RuntimeError(f"namespace set-up failed:\n{done.stdout}{done.stderr}")

    def _enter(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--target={self.init_pid}", "--net", "--mount", "--pid",
                f"--wdns={self.folder}", "--", *argv]  # fmt: skip

    def run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A short command inside the namespaces (ip, iptables-save, ...)."""
        return subprocess.run(
            self._enter(argv), capture_output=True, text=True, timeout=timeout, env=self.env
        )

    def spawn(self, name: str, argv: list[str], log: Path) -> Daemon:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                self._enter(argv), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True,  # a Ctrl-C in pytest must not kill it before stop()
                preexec_fn=start_node_daemon,
            )  # fmt: skip
        self.daemons[name] = Daemon(name, process, log)
        return self.daemons[name]

    def check_alive(self) -> None:
        for daemon in self.daemons.values():
            if not daemon.alive():
                raise RuntimeError(
                    f"{daemon.name} exited with {daemon.process.returncode}:\n{daemon.tail()}"
                )

    def stop(self, timeout: float = 20) -> None:
        """Kill everything inside (init's death takes the whole PID namespace along)."""
        if self.init_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGKILL)
        waiting = [d.process for d in self.daemons.values()]
        if self.holder is not None:
            waiting.append(self.holder)
        deadline = time.monotonic() + timeout
        for process in waiting:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        # The kernel reaps the namespace's processes asynchronously: wait until none is left.
        while self.inodes and any(processes_in(ino) for ino in self.inodes.values()):
            if time.monotonic() > deadline:
                left = {kind: processes_in(ino) for kind, ino in self.inodes.items()}
                raise RuntimeError(f"processes left in the cluster namespaces: {left}")
            time.sleep(0.05)
        self.daemons.clear()
        self.holder = None
