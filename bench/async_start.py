"""Async start-up: how long a tiny heatmap takes from submit to `running` and to its
end, next to the same command run sync: on the local backend (the embedded default), and
on the Kubernetes backend with the test suite's cluster (a real node: each async run is
a Job whose pod starts the runner image; bench/kubernetes_cluster.py).

Starts the API on a free port (`start_api`, as the e2e tests do), then N times, one
request at a time: a sync run, and an async run followed on `WS /ws/jobs/{id}`. The
async times are the client's own clock from just before the POST to the moment the
`running` and the terminal messages arrive, never the server's `ts`.

    .venv/bin/python bench/async_start.py [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.kubernetes_cluster import JobWatch, cluster_api
from bench.tables import Table, ms
from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api

RUNS, QUICK_RUNS = 20, 5
K8S_RUNS, K8S_QUICK_RUNS = 10, 3  # each async run is a pod start: seconds, not ms
GOAL_GAP_S = 0.1  # the goal: local async submit → terminal within this of sync
TERMINAL = {"succeeded", "failed", "cancelled"}
MILESTONES = {0.0: "queued", 0.15: "running", 0.9: "command ended", 1.0: "terminal"}


@dataclass
class AsyncTimes:
    job_id: str
    posted_at: float  # epoch seconds, just before the POST
    accepted: float  # POST → 202
    running: float  # POST → the `running` message
    terminal: float  # POST → the terminal message
    from_history: bool  # `running` was already in the log when the stream opened
    phases: dict[str, float]  # between the events' own `ts`: where the time went


def heatmap(source: str, mode: str) -> dict:
    return {"stage": "visualize", "command": "heatmap", "mode": mode,
            "args": {"input": source, "output": "h.png", "width": 320,
                     "height": 160, "no_coastline": True, "no_borders": True,
                     "no_gridlines": True}}  # fmt: skip


def run_sync(client: httpx.Client, body: dict) -> float:
    started = time.time()
    answer = client.post("/cli/run", json=body).json()
    elapsed = time.time() - started
    assert answer["exit_code"] == 0, answer
    return elapsed


def run_async(server: ApiServer, client: httpx.Client, body: dict) -> AsyncTimes:
    started = time.time()
    answer = client.post("/cli/run", json=body)
    accepted = time.time() - started
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    running = terminal = None
    stamps: dict[str, float] = {}  # the server's `ts` of each milestone
    url = server.url.replace("http://", "ws://") + f"/ws/jobs/{job_id}"
    with connect(url, additional_headers={"X-API-Key": API_KEY}, open_timeout=30) as ws:
        opened = time.time()
        for raw in ws:  # ends when the server closes after the terminal message
            now = time.time()
            message = json.loads(raw)
            milestone = MILESTONES.get(message.get("progress", -1.0))
            if milestone:
                stamps[milestone] = message["ts"]
            if message.get("status") == "running":
                running, running_ts = now - started, message["ts"]
            elif message.get("status") in TERMINAL:
                assert message["exit_code"] == 0, message
                terminal = now - started
    assert running is not None and terminal is not None, f"{job_id}: stream ended early"
    phases = {f"{a} → {b}": stamps[b] - stamps[a] for a, b in itertools.pairwise(stamps)}
    return AsyncTimes(job_id, started, accepted, running, terminal, running_ts < opened, phases)


def interleaved(
    server: ApiServer, field: Path, runs: int, upload: bool = False
) -> tuple[list[float], list[AsyncTimes]]:
    """`runs` sync and async runs, one at a time, after one of each to warm up; the
    input named by its path, or uploaded once (a runner pod reads no local path)."""
    sync: list[float] = []
    async_runs: list[AsyncTimes] = []
    with server.client() as client:
        source = str(field)
        if upload:
            meta = client.post("/upload", files={"file": (field.name, field.read_bytes())})
            source = f"file_id:{meta.json()['file_id']}"
        run_sync(client, heatmap(source, "sync"))  # warms the HTTP path and pools
        run_async(server, client, heatmap(source, "async"))
        for _ in range(runs):  # interleaved: the machine's load weighs on both
            sync.append(run_sync(client, heatmap(source, "sync")))
            async_runs.append(run_async(server, client, heatmap(source, "async")))
    return sync, async_runs


def measure(quick: bool) -> list[Table]:
    runs = QUICK_RUNS if quick else RUNS
    with tempfile.TemporaryDirectory(prefix="zyra-bench-async-") as tmp:
        inputs = Path(tmp) / "inputs"  # an allowed path prefix may not hold the data dir
        inputs.mkdir()
        np.save(inputs / "field.npy", np.random.default_rng(0).random((90, 180)))
        server = start_api(Path(tmp) / "api", inputs)
        try:
            sync, async_runs = interleaved(server, inputs / "field.npy", runs)
        finally:
            stop_api(server)
        result = table(runs, quick, sync, async_runs)
        k8s_runs = K8S_QUICK_RUNS if quick else K8S_RUNS
        try:
            with cluster_api(Path(tmp) / "k8s", inputs) as (k8s_server, jobs, setup):
                k8s_sync, k8s_async = interleaved(
                    k8s_server, inputs / "field.npy", k8s_runs, upload=True
                )
        except Exception as exc:  # the local row still stands; the table says why not
            result.add("Kubernetes", f"not measured: {type(exc).__name__}: {exc}"[:200],
                       "", "", "", "")  # fmt: skip
            return [result]
    add_kubernetes(result, k8s_runs, k8s_sync, k8s_async, jobs, setup)
    return [result]


def p50_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms" if values else "n/a"


def phase_medians(async_runs: list[AsyncTimes]) -> str:
    names = dict.fromkeys(name for a in async_runs for name in a.phases)
    medians = {name: statistics.median(a.phases[name] for a in async_runs if name in a.phases)
               for name in names}  # fmt: skip
    return ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in medians.items())


def add_kubernetes(
    result: Table,
    runs: int,
    sync: list[float],
    async_runs: list[AsyncTimes],
    jobs: JobWatch,
    setup: dict[str, float],
) -> None:
    terminal = [a.terminal for a in async_runs]
    gap = statistics.median(terminal) - statistics.median(sync)
    result.add("Kubernetes (real node)", ms(sync), ms([a.accepted for a in async_runs]),
               ms([a.running for a in async_runs]), ms(terminal),
               f"{gap * 1000:+.0f} ms")  # fmt: skip
    created = [jobs.job_created[a.job_id] - a.posted_at
               for a in async_runs if a.job_id in jobs.job_created]  # fmt: skip
    after_exit = [a.posted_at + a.terminal - jobs.pod_terminated[a.job_id]
                  for a in async_runs if a.job_id in jobs.pod_terminated]  # fmt: skip
    result.notes += [
        f"Kubernetes: the same heatmap, its input uploaded once (`file_id`, fetched by each "
        f"runner pod from MinIO); {runs} sync and {runs} async runs, interleaved. The test "
        "suite's cluster on this machine (tests/k8s/real_cluster.py: kubelet, containerd + "
        "runc, CNI bridge), the runner image built from Dockerfile.runner and already on "
        "the node, the API inside the cluster's namespaces with Redis and MinIO on the "
        "machine. Sync runs fork in the API's own template process, as in the API pod.",
        f"Kubernetes, from a watch on the namespace (client clock): submit → the Job seen "
        f"{p50_ms(created)} p50 ({len(created)} of {runs}); the runner container seen "
        f"terminated → the terminal message {p50_ms(after_exit)} p50 ({len(after_exit)} of "
        f"{runs}; negative: the runner reports its exit code before the kubelet does).",
        f"Kubernetes, between the events' own `ts` (p50): {phase_medians(async_runs)}. "
        "queued → running is the pod's scheduling, sandbox and container start, and the "
        "runner's start-up (Python, imports).",
        "Kubernetes set-up, not in the figures: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in setup.items())
        + ".",
    ]


def table(runs: int, quick: bool, sync: list[float], async_runs: list[AsyncTimes]) -> Table:
    terminal = [a.terminal for a in async_runs]
    gap = statistics.median(terminal) - statistics.median(sync)
    result = Table(
        "Async start: a tiny heatmap, submit → running → terminal (p50 / p95 ms)",
        ["backend", "sync run", "async: submit → 202", "submit → running",
         "submit → terminal", "terminal minus sync, p50"],
    )  # fmt: skip
    accepted, running = [a.accepted for a in async_runs], [a.running for a in async_runs]
    result.add("local", ms(sync), ms(accepted), ms(running), ms(terminal), f"{gap * 1000:+.0f} ms")
    verdict = (
        f"met ({gap * 1000:+.0f} ms)"
        if gap <= GOAL_GAP_S
        else f"missed by {(gap - GOAL_GAP_S) * 1000:.0f} ms (the gap is {gap * 1000:.0f} ms)"
    )
    history = sum(a.from_history for a in async_runs)
    phases = phase_medians(async_runs)
    result.notes += [
        f"`visualize heatmap` 320x160 of a 90x180 .npy, no coastline, borders or gridlines; "
        f"{runs} sync and {runs} async runs, interleaved, one at a time, after one of each "
        f"to warm up{' (quick: fewer runs)' if quick else ''}. Embedded stores, local "
        "backend, one API process started as the e2e tests do (rate limits and fair-share "
        "caps off).",
        "Sync: POST /cli/run (mode sync) until its answer. Async: from just before POST "
        "(mode async) until the `running` and the terminal message arrive on "
        "`WS /ws/jobs/{id}`, opened right after the 202; client clock, not the events' `ts`.",
        f"`running` was already in the job's history when the WebSocket opened in {history} "
        f"of {runs} runs (then its time is the stream's opening, later than the event).",
        f"Where an async run's time goes (p50 between the events' own `ts`): {phases}.",
        f"Goal: async submit → terminal within {GOAL_GAP_S * 1000:.0f} ms of the sync "
        f"latency (p50): {verdict}.",
    ]
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} runs, not {RUNS}")
    for t in measure(parser.parse_args().quick):
        print(t.markdown())
