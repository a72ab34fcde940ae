"""Latency of a sync heatmap: through the API vs a fresh `zyra` process.

Starts the API (embedded default) on a free port, then times N sequential and
N concurrent requests, and N runs of the `zyra` CLI itself. Prints a table.

    .venv/bin/python bench/sync_latency.py [N]
"""

from __future__ import annotations

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

ARGS = ["--width", "320", "--height", "160", "--no-coastline", "--no-borders", "--no-gridlines"]


def row(label: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"| {label:<34} | {len(ms):>3} | {statistics.median(ms):>8.1f} | {p95:>8.1f} |"


def main(n: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="zyra-bench-"))
    np.save(tmp / "field.npy", np.random.default_rng(0).random((90, 180)))
    body = {
        "stage": "visualize",
        "command": "heatmap",
        "args": {"input": str(tmp / "field.npy"), "output": "h.png", "width": 320, "height": 160,
                 "no_coastline": True, "no_borders": True, "no_gridlines": True},
    }  # fmt: skip
    server = start_api(tmp, tmp)
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
    cli = []
    for _ in range(min(n, 5)):
        t = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).parent / "zyra"), "visualize", "heatmap", "--input",
             str(tmp / "field.npy"), "--output", str(tmp / "cli.png"), *ARGS],
            check=True, capture_output=True,
        )  # fmt: skip
        cli.append(time.perf_counter() - t)
    print("| sync heatmap 320x160                | n   | median ms | p95 ms   |")
    print("|------------------------------------|-----|----------|----------|")
    print(row("API, one at a time", sequential))
    print(row("API, 4 clients at once (per req)", concurrent))
    print(row("zyra CLI, fresh process", cli))
    print(f"\nAPI throughput with 4 clients: {n / wall:.1f} runs/s on this machine")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
