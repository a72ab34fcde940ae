"""Latency of a sync heatmap: through the API vs a fresh `zyra` process.

Starts the API on a free port (embedded default; with --sync-executor, sync runs
fork in a separate `python -m runner.zygote --listen` process, as in the chart),
then times N sequential and N concurrent requests, and N runs of the `zyra` CLI
itself. Prints a table.

    .venv/bin/python bench/sync_latency.py [N] [--sync-executor]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.conftest import start_api, stop_api
from tests.e2e.sync_executor import SyncExecutor

ARGS = ["--width", "320", "--height", "160", "--no-coastline", "--no-borders", "--no-gridlines"]


def row(label: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"| {label:<34} | {len(ms):>3} | {statistics.median(ms):>8.1f} | {p95:>8.1f} |"


def main(n: int, sync_executor: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="zyra-bench-"))
    inputs = tmp / "inputs"  # an allowed path prefix may not hold the API's data dir
    inputs.mkdir()
    np.save(inputs / "field.npy", np.random.default_rng(0).random((90, 180)))
    body = {
        "stage": "visualize",
        "command": "heatmap",
        "args": {"input": str(inputs / "field.npy"), "output": "h.png", "width": 320, "height": 160,
                 "no_coastline": True, "no_borders": True, "no_gridlines": True},
    }  # fmt: skip
    executor = SyncExecutor(tmp / "pod" / "executor.sock", tmp / "executor.log")
    env = {}
    if sync_executor:
        executor.start()
        env = {"ZYRA_SYNC_EXECUTOR_SOCKET": str(executor.socket),
               "ZYRA_WORK_DIR": str(tmp / "pod" / "work")}  # fmt: skip
    try:
        server = start_api(tmp / "api", inputs, **env)
    except BaseException:
        if sync_executor:
            executor.stop()
        raise
    try:
        with server.client() as client:

            def one(_: int = 0) -> float:
                t = time.perf_counter()
                r = client.post("/cli/run", json=body)
                assert r.json()["exit_code"] == 0, r.text
                return time.perf_counter() - t

            one()  # first request warms the HTTP path
            sequential = [one() for _ in range(n)]
            with ThreadPoolExecutor(4) as pool:
                t0 = time.perf_counter()
                concurrent = list(pool.map(one, range(n)))
                wall = time.perf_counter() - t0
    finally:
        stop_api(server)
        if sync_executor:
            executor.stop()
    cli = []
    for _ in range(min(n, 5)):
        t = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).parent / "zyra"), "visualize", "heatmap", "--input",
             str(inputs / "field.npy"), "--output", str(tmp / "cli.png"), *ARGS],
            check=True, capture_output=True,
        )  # fmt: skip
        cli.append(time.perf_counter() - t)
    print("sync runs in:", "a sync executor process" if sync_executor else "the API's own")
    print("| sync heatmap 320x160                | n   | median ms | p95 ms   |")
    print("|------------------------------------|-----|----------|----------|")
    print(row("API, one at a time", sequential))
    print(row("API, 4 clients at once (per req)", concurrent))
    print(row("zyra CLI, fresh process", cli))
    print(f"\nAPI throughput with 4 clients: {n / wall:.1f} runs/s on this machine")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=20)
    parser.add_argument("--sync-executor", action="store_true",
                        help="sync runs in a sync executor process, as in the chart")  # fmt: skip
    args = parser.parse_args()
    main(args.n, args.sync_executor)
