"""Real Zyra commands run synchronously through the HTTP API."""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import netCDF4
import numpy as np
import pytest

from runner.samples import write_grib2
from tests.e2e.conftest import ApiServer, start_api, stop_api
from tests.e2e.sync_executor import children, command_pids

MAP_FLAGS = {"no_coastline": True, "no_borders": True, "no_gridlines": True}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(client: httpx.Client, stage: str, command: str | None, args: dict, **extra) -> dict:
    response = client.post(
        "/cli/run", json={"stage": stage, "command": command, "args": args, **extra}
    )
    assert response.status_code == 200, response.text
    return response.json()


def download(client: httpx.Client, job_id: str, name: str | None = None) -> bytes:
    response = client.get(f"/jobs/{job_id}/download", params={"file": name} if name else None)
    assert response.status_code == 200, response.text
    return response.content


def test_heatmap_png_from_npy(client: httpx.Client, inputs: Path) -> None:
    body = run(
        client,
        "visualize",
        "heatmap",
        {"input": str(inputs / "field.npy"), "output": "heat.png", "width": 240, "height": 120,
         **MAP_FLAGS},
    )  # fmt: skip
    assert body["status"] == "succeeded" and body["exit_code"] == 0
    assert body["reason"] == "Completed"
    assert "heat.png" in body["stderr"]  # Zyra logs the path it wrote
    [output] = body["outputs"]
    assert output["name"] == "heat.png" and output["source"] == "workdir"
    png = download(client, body["job_id"])
    assert png.startswith(PNG_MAGIC)
    assert len(png) == output["size"]
    import hashlib

    assert hashlib.sha256(png).hexdigest() == output["sha256"]
    from PIL import Image

    assert Image.open(io.BytesIO(png)).size == (240, 120)


def test_a_runs_folders_are_removed_once_it_has_answered(
    api: ApiServer, client: httpx.Client, inputs: Path
) -> None:
    """Its working directory, temp dir and home hold what the caller sent and got: they
    go right after the answer (off its path), its outputs stay downloadable."""
    body = run(client, "visualize", "heatmap",
               {"input": str(inputs / "field.npy"), "output": "heat.png", **MAP_FLAGS})  # fmt: skip
    folder = api.data_dir / "work" / body["job_id"]
    deadline = time.monotonic() + 10
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not folder.exists()
    assert download(client, body["job_id"]).startswith(PNG_MAGIC)


def test_grib2_to_netcdf_keeps_the_values(client: httpx.Client, inputs: Path, tmp_path) -> None:
    expected = write_grib2(tmp_path / "check.grib2")
    body = run(
        client,
        "process",
        "convert-format",
        {"file_or_url": str(inputs / "t2m.grib2"), "format": "netcdf", "output": "t2m.nc"},
    )
    assert body["exit_code"] == 0, body["stderr"]
    assert body["stdout"] == ""
    assert body["stderr"] == "INFO: t2m.nc\n"
    assert [o["name"] for o in body["outputs"]] == ["t2m.nc"]
    nc = tmp_path / "t2m.nc"
    nc.write_bytes(download(client, body["job_id"], "t2m.nc"))
    with netCDF4.Dataset(nc) as ds:
        [var] = [v for v in ds.variables.values() if v.ndim == 2]
        np.testing.assert_allclose(np.asarray(var[:]).ravel(), expected, atol=0.01)


def test_binary_stdout_becomes_a_downloadable_output(
    client: httpx.Client, inputs: Path, tmp_path
) -> None:
    body = run(
        client,
        "process",
        "convert-format",
        {"file_or_url": str(inputs / "t2m.grib2"), "format": "netcdf", "stdout": True},
    )
    assert body["exit_code"] == 0, body["stderr"]
    assert body["stdout_is_binary"] is True
    assert body["stdout"] == ""
    [output] = body["outputs"]
    assert output["source"] == "stdout" and output["name"] == "stdout.nc"
    data = download(client, body["job_id"])
    assert data[:3] in (b"CDF", b"\x89HD") and len(data) == output["size"]
    (tmp_path / "out.nc").write_bytes(data)
    with netCDF4.Dataset(tmp_path / "out.nc") as ds:
        assert any(v.ndim == 2 for v in ds.variables.values())


def test_timeseries_png_from_csv(client: httpx.Client, inputs: Path) -> None:
    body = run(
        client,
        "visualize",
        "timeseries",
        {"input": str(inputs / "series.csv"), "x": "time", "y": "value", "output": "ts.png",
         "title": "Squares"},
    )  # fmt: skip
    assert body["exit_code"] == 0, body["stderr"]
    assert [o["name"] for o in body["outputs"]] == ["ts.png"]
    assert download(client, body["job_id"]).startswith(PNG_MAGIC)


def test_uncaught_exception_exits_1_with_traceback(client: httpx.Client, inputs: Path) -> None:
    body = run(
        client,
        "process",
        "convert-format",
        {"file_or_url": str(inputs / "garbage.grib2"), "format": "netcdf", "output": "x.nc"},
    )
    assert body["status"] == "failed"
    assert body["exit_code"] == 1 and body["reason"] == "Error"
    assert "Traceback (most recent call last)" in body["stderr"]
    assert "no GRIB messages found" in body["stderr"]
    assert body["outputs"] == []


def test_usage_error_exits_2_with_zyras_usage_message(client: httpx.Client, inputs: Path) -> None:
    # --cmap and --cmap-file are mutually exclusive in Zyra's own parser.
    body = run(
        client,
        "visualize",
        "heatmap",
        {"input": str(inputs / "field.npy"), "output": "h.png", "cmap": "viridis",
         "cmap_file": "colors.json"},
    )  # fmt: skip
    assert body["exit_code"] == 2 and body["status"] == "failed"
    assert "usage: zyra" in body["stderr"]
    assert "not allowed with argument" in body["stderr"]


def test_missing_input_exits_with_zyras_own_code(client: httpx.Client) -> None:
    body = run(
        client, "process", "convert-format", {"file_or_url": "nowhere.grib2", "format": "netcdf",
                                              "output": "x.nc"}
    )  # fmt: skip
    assert body["exit_code"] == 2
    assert "Input not found" in body["stderr"]


def test_timeout_kills_the_command_and_reports_124(
    client: httpx.Client, silent_server: str
) -> None:
    started = time.monotonic()
    body = run(client, "acquire", "http", {"url": silent_server, "output": "x.bin"}, timeout_s=2)
    elapsed = time.monotonic() - started
    assert body["exit_code"] == 124 and body["reason"] == "Timeout"
    assert body["status"] == "failed"
    assert elapsed < 2 + 2 + 5  # timeout + kill grace + slack


def _command_pids(api: ApiServer) -> set[int]:
    """Processes running commands, forked by the API's template process."""
    return {pid for template in children(api.process.pid) for pid in command_pids(template)}


@contextmanager
def hanging_command(
    api: ApiServer, client: httpx.Client, url: str, timeout_s: float
) -> Iterator[tuple[int, Future[dict]]]:
    """A sync run of a command that waits on `url`; yields its pid and the pending response."""
    before = _command_pids(api)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            run, client, "acquire", "http", {"url": url, "output": "x"}, timeout_s=timeout_s
        )
        deadline = time.monotonic() + 30
        while not (new := _command_pids(api) - before) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(new) == 1, f"expected one new command process, found {new}"
        yield new.pop(), pending


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGKILL, 137), (signal.SIGTERM, 143)])
def test_command_killed_by_a_signal_reports_128_plus_n(
    api: ApiServer, client: httpx.Client, silent_server: str, sig: int, code: int
) -> None:
    with hanging_command(api, client, silent_server, timeout_s=60) as (pid, pending):
        time.sleep(0.5)
        os.kill(pid, sig)
        body = pending.result(timeout=60)
    assert body["exit_code"] == code
    assert body["reason"] == "Signaled"


def test_eight_concurrent_runs_each_get_their_own_streams_and_outputs(
    client: httpx.Client, inputs: Path, tmp_path: Path
) -> None:
    grid = {f"g{i}.grib2": write_grib2(inputs / f"g{i}.grib2", ni=4 + i) for i in range(3)}
    requests = [
        ("process", "convert-format",
         {"file_or_url": str(inputs / name), "format": "netcdf", "output": f"c{i}.nc"})
        for i, name in enumerate(grid)
    ] + [
        ("visualize", "heatmap",
         {"input": str(inputs / "field.npy"), "output": f"h{i}.png", "width": 100 + i,
          "height": 50, **MAP_FLAGS})
        for i in range(3)
    ] + [
        ("visualize", "timeseries",
         {"input": str(inputs / "series.csv"), "x": "time", "y": "value", "output": "ts7.png"}),
        ("process", "convert-format",
         {"file_or_url": str(inputs / "garbage.grib2"), "format": "netcdf", "output": "bad.nc"}),
    ]  # fmt: skip
    with ThreadPoolExecutor(len(requests)) as pool:
        bodies = list(pool.map(lambda r: run(client, *r), requests))

    for i, body in enumerate(bodies[:3]):
        assert body["stderr"] == f"INFO: c{i}.nc\n"
        assert [o["name"] for o in body["outputs"]] == [f"c{i}.nc"]
        path = tmp_path / f"c{i}.nc"
        path.write_bytes(download(client, body["job_id"]))
        with netCDF4.Dataset(path) as ds:
            [var] = [v for v in ds.variables.values() if v.ndim == 2]
            assert var.shape[1] == 4 + i  # this job's own grid, not a neighbour's
    for i, body in enumerate(bodies[3:6]):
        assert body["exit_code"] == 0
        assert body["stderr"] == f"INFO: h{i}.png\n"
        assert [o["name"] for o in body["outputs"]] == [f"h{i}.png"]
    assert [o["name"] for o in bodies[6]["outputs"]] == ["ts7.png"]
    failing = bodies[7]
    assert failing["exit_code"] == 1 and failing["outputs"] == []
    assert "no GRIB messages found" in failing["stderr"]
    others = "".join(b["stdout"] + b["stderr"] for b in bodies[:7])
    assert "no GRIB messages found" not in others
    assert len({b["job_id"] for b in bodies}) == len(bodies)


def test_a_sync_run_is_visible_later_as_a_job(client: httpx.Client, inputs: Path) -> None:
    body = run(
        client, "render", "heatmap",
        {"input": str(inputs / "field.npy"), "output": "later.png", **MAP_FLAGS},
    )  # fmt: skip
    job = client.get(f"/jobs/{body['job_id']}").json()
    assert job["status"] == "succeeded"
    assert (job["stage"], job["command"], job["exit_code"]) == ("visualize", "heatmap", 0)
    assert job["stderr"] == body["stderr"]
    assert job["outputs"] == body["outputs"]
    assert job["finished_at"] >= job["started_at"] >= job["created_at"]


def test_commands_see_no_api_secrets_and_the_api_keeps_its_cwd(
    api: ApiServer, client: httpx.Client, silent_server: str
) -> None:
    api_cwd = os.readlink(f"/proc/{api.process.pid}/cwd")
    with hanging_command(api, client, silent_server, timeout_s=3) as (pid, pending):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        live_env = dict(e.split(b"=", 1) for e in environ if b"=" in e)
        # Seen at once, the process may still be the template's fresh fork: wait until
        # it has moved into its job (it then hangs on the silent server).
        deadline = time.monotonic() + 10
        while (command_cwd := os.readlink(f"/proc/{pid}/cwd")) == "/" and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        pending.result(timeout=30)
    # Neither the command's initial environment (inherited from the template
    # process) nor anything it could read names the API's keys.
    assert b"ZYRA_API_KEYS" not in live_env
    assert not any(b"e2e-secret-key" in e for e in environ)
    assert command_cwd.startswith(str(api.data_dir / "work"))
    assert os.readlink(f"/proc/{api.process.pid}/cwd") == api_cwd


def test_a_lost_template_process_is_503_then_replaced(
    api: ApiServer, client: httpx.Client, inputs: Path, silent_server: str
) -> None:
    [zygote] = [
        int(pid)
        for task in Path(f"/proc/{api.process.pid}/task").iterdir()
        for pid in (task / "children").read_text().split()
    ]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            client.post,
            "/cli/run",
            json={"stage": "acquire", "command": "http",
                  "args": {"url": silent_server, "output": "x"}, "timeout_s": 60},
        )  # fmt: skip
        time.sleep(1.5)
        os.kill(zygote, signal.SIGKILL)
        lost = pending.result(timeout=60)
    assert lost.status_code == 503
    assert "executor" in lost.json()["detail"]
    body = run(
        client, "visualize", "heatmap",
        {"input": str(inputs / "field.npy"), "output": "again.png", **MAP_FLAGS},
    )  # fmt: skip
    assert body["exit_code"] == 0


def test_with_two_template_processes_runs_at_once_are_forked_by_both(
    tmp_path: Path, inputs: Path, silent_server: str
) -> None:
    """ZYRA_TEMPLATE_PROCESSES=2: two template processes, each run to the least busy."""
    api = start_api(tmp_path / "api", inputs, ZYRA_TEMPLATE_PROCESSES="2")
    try:
        templates = children(api.process.pid)
        assert len(templates) == 2
        heatmap = {"input": str(inputs / "field.npy"), "output": "h.png", **MAP_FLAGS}
        with (
            api.client() as client,
            hanging_command(api, client, silent_server, 60) as (a, _),
            hanging_command(api, client, silent_server, 60) as (b, _),
        ):
            forked_by = {t for t in templates for pid in (a, b) if pid in command_pids(t)}
            assert forked_by == templates
            body = run(client, "visualize", "heatmap", heatmap)
            assert body["exit_code"] == 0 and download(client, body["job_id"])[:8] == PNG_MAGIC
            os.kill(a, signal.SIGKILL)
            os.kill(b, signal.SIGKILL)
    finally:
        stop_api(api)
