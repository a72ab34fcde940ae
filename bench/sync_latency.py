"""Latency of a sync heatmap: through the API vs a fresh `zyra` process.

Starts the API on a free port (embedded default; with --sync-executor, sync runs
fork in a separate `python -m runner.zygote --listen` process, as in the chart),
then times N sequential and N concurrent requests, and runs of the `zyra` CLI
itself. Prints a table. With `--against CHECKOUT` (another clone of this project
with its own `.venv`, e.g. the previous release), that checkout's API is started
too and measured side by side, requests interleaved so that the machine's load
weighs on both alike.

    .venv/bin/python bench/sync_latency.py [N] [--sync-executor] [--against CHECKOUT]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.conftest import ApiServer, start_api, stop_api
from tests.e2e.sync_executor import SyncExecutor

ARGS = ["--width", "320", "--height", "160", "--no-coastline", "--no-borders", "--no-gridlines"]
CLIENTS = 4


def stats(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"{statistics.median(ms):>7.1f} / {p95:>7.1f}"


def timed(client: httpx.Client, body: dict) -> float:
    t = time.perf_counter()
    r = client.post("/cli/run", json=body)
    assert r.json()["exit_code"] == 0, r.text
    return time.perf_counter() - t


def main(n: int, sync_executor: bool, against: Path | None) -> None:
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
    with ExitStack() as stack:
        env = {}
        if sync_executor:
            executor = SyncExecutor(tmp / "pod" / "executor.sock", tmp / "executor.log")
            executor.start()
            stack.callback(executor.stop)
            env = {"ZYRA_SYNC_EXECUTOR_SOCKET": str(executor.socket),
                   "ZYRA_WORK_DIR": str(tmp / "pod" / "work")}  # fmt: skip
        servers: dict[str, ApiServer] = {"this checkout": start_api(tmp / "api", inputs, **env)}
        stack.callback(stop_api, servers["this checkout"])
        if against is not None:
            servers[str(against)] = start_api(tmp / "against", inputs, checkout=against)
            stack.callback(stop_api, servers[str(against)])
        clients = {label: stack.enter_context(s.client()) for label, s in servers.items()}
        for client in clients.values():
            timed(client, body)  # the first request warms the HTTP path
        sequential: dict[str, list[float]] = {label: [] for label in clients}
        for _ in range(n):
            for label, client in clients.items():
                sequential[label].append(timed(client, body))
        concurrent: dict[str, list[float]] = {label: [] for label in clients}
        walls: dict[str, float] = dict.fromkeys(clients, 0.0)
        for _ in range(2):  # two rounds each, alternating
            for label, client in clients.items():
                with ThreadPoolExecutor(CLIENTS) as pool:
                    t0 = time.perf_counter()
                    concurrent[label] += pool.map(timed, [client] * (n // 2), [body] * (n // 2))
                    walls[label] += time.perf_counter() - t0
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
    print(f"sync heatmap 320x160 of a 90x180 field, n={n}; median / p95 ms")
    print(f"| {'':<34} | " + " | ".join(f"{label:^22}" for label in clients) + " |")
    print(f"|{'-' * 36}|" + "|".join("-" * 24 for _ in clients) + "|")
    print(f"| {'API, one at a time':<34} | "
          + " | ".join(f"{stats(sequential[c]):^22}" for c in clients) + " |")  # fmt: skip
    print(f"| {f'API, {CLIENTS} clients at once (per req)':<34} | "
          + " | ".join(f"{stats(concurrent[c]):^22}" for c in clients) + " |")  # fmt: skip
    print(f"| {f'API throughput, {CLIENTS} clients':<34} | "
          + " | ".join(f"{f'{len(concurrent[c]) / walls[c]:.1f} runs/s':^22}" for c in clients)
          + " |")  # fmt: skip
    print(f"| {'zyra CLI, fresh process':<34} | {stats(cli):^22} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=20)
    parser.add_argument("--sync-executor", action="store_true",
                        help="sync runs in a sync executor process, as in the chart")  # fmt: skip
    parser.add_argument(
        "--against", type=Path, help="another checkout (with its .venv), measured side by side"
    )
    args = parser.parse_args()
    main(args.n, args.sync_executor, args.against)
