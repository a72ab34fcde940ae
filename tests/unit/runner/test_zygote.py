"""The template process: whom the sync executor serves, the policy it reads from its
environment, and how requests reach it, embedded and as a sync executor (`--listen`).
Its whole life with real clients: tests/e2e/test_sync_executor.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.execute import CommandExecutor, ExecutorUnavailableError, Zygote
from runner.sandbox import SandboxMode, SandboxPolicy
from runner.warm_runner import RunnerRequest
from runner.workspace import JobFolders
from runner.written_pages import PAGE
from runner.zygote import _is_ours
from runner.zygote_requests import REQUEST_FDS, read_request, request_file, send_request
from tests.e2e.sync_executor import SyncExecutor, children, command_pids
from tests.kernel import kernel_at_least

# More than one SOCK_SEQPACKET packet holds (the send buffer, about 208 KiB).
LONG_OPTION = "--no-such-option-" + "y" * 300_000
OFF = SandboxPolicy(mode=SandboxMode.OFF)


def test_its_own_descendants_are_refused_and_others_are_not() -> None:
    child = os.fork()
    if child == 0:
        grandchild = os.fork()
        if grandchild == 0:
            time.sleep(30)
        os.waitpid(grandchild, 0)
        os._exit(0)
    try:
        deadline = time.monotonic() + 10
        children = Path(f"/proc/{child}/task/{child}/children")
        while not (grandchildren := children.read_text().split()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert _is_ours(child) and _is_ours(int(grandchildren[0]))
        assert not _is_ours(os.getppid())  # e.g. the API, started beside it
        assert not _is_ours(0)  # a peer in another pid namespace (the API's container)
        assert not _is_ours(1)
    finally:
        os.kill(int(grandchildren[0]), signal.SIGKILL)
        os.waitpid(child, 0)
    assert _is_ours(child), "a peer that is gone is not trusted"


def test_the_policy_comes_from_the_same_variables_the_api_reads() -> None:
    env = {"ZYRA_SANDBOX": "required", "ZYRA_SANDBOX_UID": "10002",
           "ZYRA_SANDBOX_TOOL_PATHS": "/opt/tools, /srv/maps"}  # fmt: skip
    policy = SandboxPolicy.from_env(env)
    assert policy.mode is SandboxMode.REQUIRED and policy.uid == 10002
    assert policy.tool_paths == ["/opt/tools", "/srv/maps"]
    assert SandboxPolicy.from_env({}) == SandboxPolicy()


def test_a_request_file_holds_any_size_and_travels_with_the_stdio_descriptors() -> None:
    payload = json.dumps({"argv": ["x" * (5 << 20)]}).encode()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    out_r, out_w = os.pipe()
    request_fd = request_file(payload)
    with ours, theirs:
        send_request(ours, "7", request_fd, out_w, out_w)
        os.close(request_fd)
        message, fds, _, _ = socket.recv_fds(theirs, 1 << 16, REQUEST_FDS)
    try:
        assert json.loads(message) == {"id": "7"} and len(fds) == REQUEST_FDS
        assert read_request(fds[2]) == payload
        os.write(fds[0], b"to the command's stdout")
        assert os.read(out_r, 100) == b"to the command's stdout"
    finally:
        for fd in (*fds, out_r, out_w):
            os.close(fd)


def test_only_a_regular_file_is_read_as_a_request() -> None:
    """A pipe could keep the single-threaded template process waiting for ever."""
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(ValueError, match="regular"):
            read_request(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncExecutor]:
    """A sync executor as the chart runs it (`python -m runner.zygote --listen`)."""
    folder = tmp_path_factory.mktemp("executor")
    process = SyncExecutor(folder / "executor.sock", folder / "executor.log", sandbox="off")
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module", params=["embedded", "listen"])
def zygote(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Zygote]:
    """The API's own template process, or the sync executor it connects to."""
    listen = request.param == "listen"
    socket_path = request.getfixturevalue("executor").socket if listen else None
    home = tmp_path_factory.mktemp("home")
    client = Zygote({"PATH": os.environ["PATH"], "HOME": str(home), "MPLBACKEND": "Agg"}, OFF,
                    socket_path=socket_path)  # fmt: skip
    client.start()
    yield client
    client.close()


def test_a_request_longer_than_a_packet_reaches_the_command(zygote: Zygote, tmp_path: Path) -> None:
    folders = JobFolders(tmp_path / "job")
    folders.create()
    request = folders.child_request(
        ["process", "decode-grib2", "x.grib2", LONG_OPTION], {"MPLBACKEND": "Agg"}, sandbox=OFF
    )
    outcome = CommandExecutor(zygote).run(request, folders.capture, timeout_s=60)
    # Zyra's own parser names the option it does not know: all of it arrived.
    stderr = outcome.stderr_path.read_text()
    assert outcome.exit_code == 2, stderr[-2000:]
    assert f"unrecognized arguments: {LONG_OPTION}\n" in stderr


def test_a_request_not_in_a_regular_file_is_refused_and_its_client_kept(
    executor: SyncExecutor,
) -> None:
    """A pipe where the request file goes would hold the executor up: it answers with an
    error for that request and goes on serving the same connection."""
    read_end, write_end = os.pipe()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
        conn.settimeout(60)
        conn.connect(str(executor.socket))
        assert json.loads(conn.recv(1 << 16))["ready"] is True
        try:
            send_request(conn, "piped", read_end, write_end, write_end)
        finally:
            os.close(read_end)
            os.close(write_end)
        reply = json.loads(conn.recv(1 << 16))
        assert reply["id"] == "piped" and "regular" in reply["error"]
        conn.send(json.dumps({"kill": 1, "signal": 0}).encode())  # still connected: no reply
        assert executor.process is not None and executor.process.poll() is None


def test_a_spawn_with_the_executor_gone_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    """The request file is closed whatever happens to the send."""
    before = len(os.listdir("/proc/self/fd"))
    client = Zygote({}, OFF, socket_path=tmp_path / "nothing.sock")
    with pytest.raises(ExecutorUnavailableError):
        client.spawn(JobFolders(tmp_path).child_request(["x"], {}), 1, 2)
    assert len(os.listdir("/proc/self/fd")) == before


def _template_pid(zygote: Zygote, request: pytest.FixtureRequest) -> int:
    if zygote._socket_path is None:  # embedded: the process it started
        assert zygote._proc is not None
        return zygote._proc.pid
    process = request.getfixturevalue("executor").process
    return process.pid


def _spares(template: int) -> set[int]:
    """Its children waiting for a command: forked, not yet in a session of their own."""
    return children(template) - command_pids(template)


def _wait_for(predicate, timeout_s: float = 10, every_s: float = 0.01):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not (found := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every_s)
    return found


def _bad_option(zygote: Zygote, tmp_path: Path) -> tuple[int, int]:
    """Run a command Zyra refuses (exit 2): its pid and exit code."""
    folders = JobFolders(tmp_path / f"job{time.monotonic_ns()}")
    folders.create()
    request = folders.child_request(["visualize", "heatmap", "--nope"], {}, sandbox=OFF)
    pids: list[int] = []
    spawner = zygote

    class Recording:
        def spawn(self, *args):  # type: ignore[no-untyped-def]
            pid, finished = spawner.spawn(*args)
            pids.append(pid)
            return pid, finished

        def kill(self, pid: int, sig: int) -> None:
            spawner.kill(pid, sig)

    outcome = CommandExecutor(Recording()).run(request, folders.capture, timeout_s=60)
    return pids[0], outcome.exit_code


def test_a_command_runs_in_a_process_forked_before_it_was_asked_for(
    zygote: Zygote, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    template = _template_pid(zygote, request)
    waiting = _wait_for(lambda: _spares(template))
    pid, code = _bad_option(zygote, tmp_path)
    assert code == 2  # Zyra's own usage error, as from a fresh process
    assert pid in waiting
    # ...and another is waiting for the next one.
    assert _wait_for(lambda: _spares(template) - {pid})


def test_a_spare_that_died_waiting_is_replaced(
    zygote: Zygote, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    template = _template_pid(zygote, request)
    for spare in _wait_for(lambda: _spares(template)):
        os.kill(spare, signal.SIGKILL)
    pid, code = _bad_option(zygote, tmp_path)
    assert code == 2
    assert Path(f"/proc/{template}").exists()  # the template itself carries on
    assert _wait_for(lambda: _spares(template) - {pid})


def test_only_the_apis_own_template_forks_runners(
    zygote: Zygote, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A runner is not confined: a sync executor (which any pod process in its group may
    reach) refuses to start one; the API's own template forks it, its output in the
    log it was given."""
    log = tmp_path / "runner.log"
    secret = f"credentials-{uuid.uuid4().hex}"
    ask = RunnerRequest(args=["--spec", str(tmp_path / "missing.json")],
                        env={"PATH": "/usr/bin:/bin", "ZYRA_JOB_CREDENTIALS": secret})  # fmt: skip
    with log.open("ab") as sink:
        if not zygote.starts_runners:
            with pytest.raises(ExecutorUnavailableError, match="does not start runners"):
                zygote.spawn_runner(ask, sink.fileno())
            return
        pid, finished = zygote.spawn_runner(ask, sink.fileno())
    code = os.waitstatus_to_exitcode(finished.result(timeout=60))
    assert code != 0 and "missing.json" in log.read_text()  # the runner's own complaint
    template = _template_pid(zygote, request)
    assert pid not in children(template)  # reaped, reported
    # The runner read its request after the fork: the template, whose memory every later
    # command starts with, never held the runner's credentials.
    assert not _memory_holds(template, secret.encode())


def _memory_holds(pid: int, needle: bytes) -> bool:
    """Whether any writable mapping of `pid` contains `needle` (root reads any process)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb") as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("rw"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except OSError:  # a guard page or a mapping that went meanwhile
                continue
    return False


def _private_dirty(pid: int) -> int:
    """Bytes of memory `pid` has of its own (written since its fork, or new)."""
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    return 1024 * sum(int(line.split()[1]) for line in rollup if line.startswith("Private_"))


def test_a_spare_copies_ahead_the_pages_commands_write_to(
    zygote: Zygote, request: pytest.FixtureRequest
) -> None:
    """Learned from the template's warm-ups; the spare waits with them as its own, so its
    command does not fault for each (runner/written_pages.py)."""
    learned = zygote.hello["written_pages"]
    assert learned > 1000  # a heatmap alone writes to ~3,600
    if not kernel_at_least(5, 14):
        return  # no MADV_POPULATE_WRITE: the spare cannot copy them (nothing else changes)
    template = _template_pid(zygote, request)
    [spare] = _wait_for(lambda: _spares(template))
    # Its own: the 8 MiB of heap it maps, and the copies (no command runs: a core is idle).
    # Not too often: reading smaps walks all of the spare's memory, in its way as it maps.
    assert _wait_for(lambda: _private_dirty(spare) >= learned * PAGE * 0.9, timeout_s=20,
                     every_s=0.25)  # fmt: skip
