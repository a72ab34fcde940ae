"""Idle event streams against the rest of the service: `GET /jobs` latency, sync runs,
and the API process's memory and threads, with no stream open, with N idle SSE clients
on a finished job, then N more on a running one, and after they have left (hung up
abruptly); twice, so that the memory that stays for good shows.

Starts the API on a free port (embedded default), runs a sync heatmap (the finished
job) and an async `acquire http` from a loopback server that never answers (the
running job), then measures phase by phase. Prints a table. The target: `GET /jobs`
p99 within 2x of the figure without streams, memory flat. With `--against CHECKOUT`
(another clone of this project with its own `.venv`, e.g. the previous release) that
checkout's API is measured the same way, after this one.

    .venv/bin/python bench/idle_streams.py [N] [--against CHECKOUT]
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import struct
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api

LIST_REQUESTS = 200  # per phase, one at a time, or as many as fit in LIST_BUDGET_S
LIST_BUDGET_S = 60.0
SYNC_RUNS = 5  # per phase
SETTLE_S = 3.0  # after clients connect or leave, before measuring
HEATMAP = {"output": "h.png", "width": 120, "height": 60,
           "no_coastline": True, "no_borders": True, "no_gridlines": True}  # fmt: skip


@dataclass
class Phase:
    name: str
    list_ms: list[float]
    sync_ms: list[float]
    rss_mib: float
    threads: int
    open_streams: int


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def process_status(pid: int) -> tuple[float, int]:
    """The API process's resident memory (MiB) and thread count."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


class IdleClient:
    """An SSE client that reads nothing after the status line: idle, as a browser tab
    left open. Asked, it reads what the server has sent meanwhile, to tell whether the
    server has ended its response."""

    def __init__(self, url: str, job_id: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=120)
        request = (f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\n"
                   f"X-API-Key: {API_KEY}\r\nAccept: text/event-stream\r\n\r\n")  # fmt: skip
        self.sock.sendall(request.encode())
        self.tail = self.sock.recv(64)
        if not self.tail.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"stream refused: {self.tail!r}")
        self.ended = False

    def is_open(self) -> bool:
        if self.ended:
            return False
        self.sock.setblocking(False)
        try:
            while chunk := self.sock.recv(65536):
                self.tail = (self.tail + chunk)[-5:]
            self.ended = True  # the server closed the connection
        except BlockingIOError:
            self.ended = self.tail.endswith(b"0\r\n\r\n")  # the end of a chunked body
        except OSError:
            self.ended = True
        finally:
            self.sock.setblocking(True)
        return not self.ended

    def hang_up(self) -> None:
        """A reset, not a polite FIN: as a client whose machine went away."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def measure(name: str, server: ApiServer, client: httpx.Client, run: dict,
            clients: list[IdleClient]) -> Phase:  # fmt: skip
    time.sleep(SETTLE_S)
    list_ms: list[float] = []
    started = time.monotonic()
    while len(list_ms) < LIST_REQUESTS and time.monotonic() - started < LIST_BUDGET_S:
        t = time.perf_counter()
        assert client.get("/jobs", params={"limit": 20}).status_code == 200
        list_ms.append((time.perf_counter() - t) * 1000)
    sync_ms = []
    for _ in range(SYNC_RUNS):
        t = time.perf_counter()
        assert client.post("/cli/run", json=run).json()["exit_code"] == 0
        sync_ms.append((time.perf_counter() - t) * 1000)
    rss, threads = process_status(server.process.pid)
    return Phase(name, list_ms, sync_ms, rss, threads, sum(c.is_open() for c in clients))


def bench(label: str, server: ApiServer, inputs: Path, silent_url: str, n: int) -> list[Phase]:
    run = {"stage": "visualize", "command": "heatmap", "mode": "sync",
           "args": {**HEATMAP, "input": str(inputs / "field.npy")}}  # fmt: skip
    with server.client(timeout=600) as client:
        finished = client.post("/cli/run", json=run).json()["job_id"]
        running = client.post("/cli/run", json={
            "stage": "acquire", "command": "http", "mode": "async", "timeout_s": 3600,
            "args": {"url": silent_url, "output": "never"}}).json()["job_id"]  # fmt: skip
        phases = [measure("no streams", server, client, run, [])]
        with ThreadPoolExecutor(32) as pool:
            for round_ in ("", ", again"):  # memory after the second: what stays for good
                on_finished = list(pool.map(IdleClient, [server.url] * n, [finished] * n))
                phases.append(
                    measure(f"{n} on a finished job{round_}", server, client, run, on_finished)
                )
                on_running = list(pool.map(IdleClient, [server.url] * n, [running] * n))
                clients = on_finished + on_running
                phases.append(
                    measure(f"+ {n} on a running job{round_}", server, client, run, clients)
                )
                for idle in clients:
                    idle.hang_up()
                phases.append(measure(f"after they left{round_}", server, client, run, []))
        client.delete(f"/jobs/{running}")
    print(f"\n{label}")
    print(f"| {'phase':<33} | GET /jobs p50 / p99 ms | sync run p50 ms | API RSS MiB | "
          "threads | streams open |")  # fmt: skip
    print(f"|{'-' * 35}|{'-' * 24}|{'-' * 17}|{'-' * 13}|{'-' * 9}|{'-' * 14}|")
    for p in phases:
        lists = f"{statistics.median(p.list_ms):7.1f} / {percentile(p.list_ms, 0.99):7.1f}"
        print(f"| {p.name:<33} | {lists:^22} | {statistics.median(p.sync_ms):^15.0f} | "
              f"{p.rss_mib:^11.0f} | {p.threads:^7} | {p.open_streams:^12} |")  # fmt: skip
    return phases


def main(n: int, against: Path | None) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the API inherits it too
    tmp = Path(tempfile.mkdtemp(prefix="zyra-bench-"))
    inputs = tmp / "inputs"  # an allowed path prefix may not hold the API's data dir
    inputs.mkdir()
    np.save(inputs / "field.npy", np.random.default_rng(0).random((90, 180)))
    print(f"{n} idle SSE clients per phase; GET /jobs?limit=20 up to {LIST_REQUESTS}x "
          f"one at a time; {SYNC_RUNS} sync heatmaps; measured {SETTLE_S:.0f} s after "
          "clients connect or leave")  # fmt: skip
    with socket.socket() as silent:  # accepts connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}/never"
        checkouts: dict[str, Path | None] = {"this checkout": None}
        if against is not None:
            checkouts[str(against)] = against
        for label, checkout in checkouts.items():
            server = start_api(tmp / label.replace("/", "_"), inputs, checkout=checkout,
                               ZYRA_MAX_STREAMS=str(4 * n),
                               ZYRA_MAX_STREAMS_PER_PRINCIPAL=str(4 * n))  # fmt: skip
            try:
                bench(label, server, inputs, silent_url, n)
            finally:
                started = time.monotonic()
                stop_api(server)
                print(f"SIGTERM to exit: {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=300)
    parser.add_argument(
        "--against", type=Path, help="another checkout (with its .venv), measured the same way"
    )
    args = parser.parse_args()
    main(args.n, args.against)
