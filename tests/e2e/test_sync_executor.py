"""Sync runs in a sync executor of their own (`python -m runner.zygote --listen`), as in
the chart's API pod: a process started apart from the API, with an environment that
holds no secret, reached over a Unix socket; the API's job folders on a shared work
dir (`ZYRA_WORK_DIR`). Real processes: the executor, one or two API servers, Zyra."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api
from tests.e2e.sync_executor import SyncExecutor
from tests.e2e.test_sync_runs import MAP_FLAGS, PNG_MAGIC, download, run
from tests.e2e.without_landlock import deny_landlock

AWS_SECRET = "e2e-aws-secret-in-the-api-only"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the pod's two containers share: the socket's folder and the work dir."""
    return tmp_path_factory.mktemp("pod")


@pytest.fixture(scope="module")
def executor(shared: Path) -> Iterator[SyncExecutor]:
    process = SyncExecutor(shared / "sock" / "executor.sock", shared / "executor.log")
    process.start()
    yield process
    process.stop()


def api_env(shared: Path, executor: SyncExecutor) -> dict[str, str]:
    return {
        "ZYRA_SYNC_EXECUTOR_SOCKET": str(executor.socket),
        "ZYRA_WORK_DIR": str(shared / "work"),
        "ZYRA_SANDBOX": "required",
        "ZYRA_SYNC_TIMEOUT_MAX_S": "120",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,  # a credential of the API's, as in the chart
    }


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, inputs: Path, shared: Path, executor: SyncExecutor
) -> Iterator[ApiServer]:
    server = start_api(tmp_path_factory.mktemp("api"), inputs, **api_env(shared, executor))
    yield server
    stop_api(server)


@pytest.fixture
def client(api: ApiServer, executor: SyncExecutor) -> Iterator[httpx.Client]:
    if executor.process is None or executor.process.poll() is not None:
        executor.start()  # a test before stopped it and failed
    with api.client() as c:
        yield c


def heatmap(inputs: Path, output: str, width: int = 240) -> dict:
    return {"input": str(inputs / "field.npy"), "output": output, "width": width,
            "height": 120, **MAP_FLAGS}  # fmt: skip


@contextmanager
def hanging_command(
    executor: SyncExecutor, client: httpx.Client, url: str, timeout_s: float = 60
) -> Iterator[tuple[int, Future[httpx.Response]]]:
    """A sync run that waits on `url`: the pid of its command (a child of the executor)
    and the pending response."""
    before = executor.command_pids()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            client.post,
            "/cli/run",
            json={"stage": "acquire", "command": "http", "args": {"url": url, "output": "x"},
                  "timeout_s": timeout_s},
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not (new := executor.command_pids() - before) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(new) == 1, f"expected one new command process, found {new}"
        yield new.pop(), pending


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_sync_heatmap_is_byte_identical_to_a_direct_run(
    client: httpx.Client, inputs: Path, tmp_path: Path
) -> None:
    body = run(client, "visualize", "heatmap", heatmap(inputs, "heat.png"))
    assert body["status"] == "succeeded" and body["stderr"] == "INFO: heat.png\n"
    png = download(client, body["job_id"])
    direct = tmp_path / "direct.png"
    subprocess.run(
        [str(Path(sys.executable).parent / "zyra"), "visualize", "heatmap",
         "--input", str(inputs / "field.npy"), "--output", str(direct), "--width", "240",
         "--height", "120", "--no-coastline", "--no-borders", "--no-gridlines"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert png.startswith(PNG_MAGIC) and png == direct.read_bytes()
    assert hashlib.sha256(png).hexdigest() == body["outputs"][0]["sha256"]


def test_an_argument_longer_than_a_socket_packet_reaches_the_command(
    client: httpx.Client, inputs: Path
) -> None:
    pattern = "no-such-variable-" + "x" * 300_000  # a packet holds about 208 KiB
    args = {"file_or_url": str(inputs / "t2m.grib2"), "pattern": pattern}
    body = run(client, "process", "extract-variable", args)
    assert body["exit_code"] == 2 and f"Variable not found: {pattern}" in body["stderr"]


def test_commands_run_in_the_executor_without_the_apis_secrets(
    api: ApiServer, executor: SyncExecutor, client: httpx.Client, silent_server: str, shared: Path
) -> None:
    ready = client.get("/readyz").json()
    assert ready["sandbox"]["mode"] == "required" and ready["sandbox"]["level"] == "full"
    with hanging_command(executor, client, silent_server, timeout_s=3) as (pid, pending):
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        mode = cwd.stat().st_mode
        assert pending.result(timeout=30).json()["exit_code"] == 124
    # Its initial environment is the executor's, which never held one of them.
    for secret in (API_KEY, AWS_SECRET, "ZYRA_API_KEYS", "AWS_SECRET_ACCESS_KEY"):
        assert secret.encode() not in environ
    assert f"PPid:\t{executor.process.pid}\n" in status  # type: ignore[union-attr]
    assert cwd.is_relative_to(shared / "work")
    # The pod's group shares the job's folders; what the command writes stays in it.
    assert stat.S_IMODE(mode) == 0o2770 and "Umask:\t0007" in status


def test_a_stopped_executor_is_503_naming_it_until_it_is_back(
    api: ApiServer, executor: SyncExecutor, client: httpx.Client, inputs: Path, silent_server: str
) -> None:
    with hanging_command(executor, client, silent_server) as (_, pending):
        executor.stop(kill=True)  # the container dies with a command running
        lost = pending.result(timeout=30)
    assert lost.status_code == 503 and lost.json()["dependency"] == "sync executor"
    ready = httpx.get(f"{api.url}/readyz")
    assert ready.status_code == 503 and ready.json()["dependency"] == "sync executor"
    refused = client.post("/cli/run", json={"stage": "visualize", "command": "heatmap",
                                            "args": heatmap(inputs, "no.png")})  # fmt: skip
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert "sync executor" in refused.json()["detail"]
    assert str(executor.socket) in refused.json()["detail"]

    executor.start()  # its container restarts
    wait_for(lambda: httpx.get(f"{api.url}/readyz").status_code == 200)
    body = run(client, "visualize", "heatmap", heatmap(inputs, "again.png"))
    assert body["exit_code"] == 0 and [o["name"] for o in body["outputs"]] == ["again.png"]


def test_sigterm_lets_running_commands_finish_then_the_executor_exits(
    executor: SyncExecutor, client: httpx.Client, inputs: Path, silent_server: str
) -> None:
    with hanging_command(executor, client, silent_server, timeout_s=3) as (_, pending):
        assert executor.process is not None
        executor.process.terminate()
        body = pending.result(timeout=30).json()
    assert body["exit_code"] == 124  # its own timeout, not the executor's end
    assert executor.process.wait(timeout=30) == 0
    assert "stopped" in executor.log_path.read_text()
    executor.start()


def test_two_apis_on_one_executor_each_get_their_own_results(
    api: ApiServer,
    executor: SyncExecutor,
    client: httpx.Client,
    inputs: Path,
    shared: Path,
    tmp_path: Path,
) -> None:
    other = start_api(tmp_path / "other", inputs, **api_env(shared, executor))
    try:
        with other.client() as other_client, ThreadPoolExecutor(6) as pool:
            runs = [
                pool.submit(run, c, "visualize", "heatmap", heatmap(inputs, f"{name}{i}.png",
                                                                    width=200 + 10 * i))
                for i in range(3)
                for name, c in (("a", client), ("b", other_client))
            ]  # fmt: skip
            bodies = [r.result(timeout=120) for r in runs]
            for i, body in enumerate(bodies):
                name, c = ("a", client) if i % 2 == 0 else ("b", other_client)
                assert [o["name"] for o in body["outputs"]] == [f"{name}{i // 2}.png"]
                png = download(c, body["job_id"])
                assert int.from_bytes(png[16:20], "big") == 200 + 10 * (i // 2)  # its width
            # Each API knows only its own jobs.
            assert other_client.get(f"/jobs/{bodies[0]['job_id']}").status_code == 404
            assert client.get(f"/jobs/{bodies[1]['job_id']}").status_code == 404
    finally:
        stop_api(other)


def test_commands_of_an_api_that_goes_away_are_killed(
    executor: SyncExecutor,
    client: httpx.Client,
    inputs: Path,
    shared: Path,
    tmp_path: Path,
    silent_server: str,
) -> None:
    other = start_api(tmp_path / "other", inputs, **api_env(shared, executor))
    try:
        with (
            other.client() as other_client,
            hanging_command(executor, client, silent_server, timeout_s=20) as (ours, mine),
            hanging_command(executor, other_client, silent_server) as (theirs, _),
        ):
            other.process.kill()  # no goodbye: its connection just closes
            wait_for(lambda: theirs not in executor.command_pids())
            assert ours in executor.command_pids()  # another client's command runs on
            os.kill(ours, signal.SIGKILL)
            assert mine.result(timeout=30).json()["exit_code"] == 137
    finally:
        stop_api(other)


def test_an_executor_that_cannot_sandbox_refuses_loudly_and_the_api_says_why(
    tmp_path: Path, inputs: Path
) -> None:
    refusing = SyncExecutor(tmp_path / "sock" / "executor.sock", tmp_path / "executor.log",
                            preexec_fn=deny_landlock)  # fmt: skip
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(start_api, tmp_path / "api", inputs,
                               ZYRA_SYNC_EXECUTOR_SOCKET=str(refusing.socket),
                               ZYRA_WORK_DIR=str(tmp_path / "work"))  # fmt: skip
        codes = []
        while not starting.done():  # restarted like a container, until the API has heard it
            refusing.start(wait=False)
            codes.append(refusing.process.wait(timeout=60))  # type: ignore[union-attr]
        with pytest.raises(RuntimeError) as failed:
            starting.result()
    reason = "ZYRA_SANDBOX=required but commands cannot be confined here"
    assert set(codes) == {1}
    assert f"not starting: {reason}" in refusing.log_path.read_text()
    assert "no Landlock" in refusing.log_path.read_text()
    assert f"refused: {reason}" in str(failed.value)  # the API's start fails, naming it
