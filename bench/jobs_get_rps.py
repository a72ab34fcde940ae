"""`GET /jobs/{id}` requests per second under Gunicorn with Redis as the store, with one
worker and with as many workers as the machine has cores, measured with `wrk`.

Starts a redis-server (and MinIO for the multi-worker runs), then for each
configuration the production image's command (Gunicorn with Uvicorn workers,
api/gunicorn_conf.py) on a free loopback port, makes one job with a sync heatmap,
and points `wrk` at that job's record.

    .venv/bin/python bench/jobs_get_rps.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.cpu import cpu_seconds
from bench.services import deployed_redis
from bench.tables import Table
from tests.deploy.dockerfiles import DOCKERFILE_API, Dockerfile
from tests.e2e.conftest import API_KEY
from tests.e2e.gunicorn_server import GunicornServer, base_env, start_gunicorn
from tests.services import S3Server

GUNICORN = Dockerfile.parse(DOCKERFILE_API).exec_form("production", "CMD")  # the image's CMD
CONNECTIONS = 32
DURATION_S, QUICK_DURATION_S = 10, 3  # each run's, after a warm-up of a fifth of it
# One key makes every request: a rate high enough never to refuse, so that each request
# is still counted against it (in Redis) as in production. The default, 600 a minute,
# would answer 429 to all but the first 600.
RATE_LIMIT = "1000000000"
# A cluster nobody listens at: more than one worker needs ZYRA_BACKEND=kubernetes (with
# the local backend Gunicorn runs one), whose Job watchers then retry in the background.
NO_CLUSTER = """apiVersion: v1
kind: Config
current-context: none
clusters: [{name: none, cluster: {server: "http://127.0.0.1:9"}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
users: [{name: none, user: {token: none}}]
"""


@dataclass(frozen=True)
class Setup:
    label: str
    backend: str
    workers: int


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    not_2xx: int
    socket_errors: str


@dataclass
class Run:
    setup: Setup
    loaded: WrkResult  # CONNECTIONS at once
    alone: WrkResult  # one connection: the service time, without queueing
    busy: dict[str, float]  # during the loaded run: CPU used, in cores, by side


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0))


def wrk_binary() -> tuple[str, str]:
    """wrk, and how it came: Debian's package, installed with apt-get if missing."""
    path = shutil.which("wrk")
    if path:
        return path, "Debian's `wrk`"
    install = "apt-get update -q && apt-get install -y -q wrk"
    done = subprocess.run(["sh", "-c", install], capture_output=True, text=True, check=False)
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError(f"wrk is missing and `{install}` failed:\n{done.stderr[-2000:]}")
    return path, "Debian's `wrk` (installed by this bench with apt-get)"


_DURATION = re.compile(r"([\d.]+)(us|ms|s|m)")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def found(pattern: str, text: str) -> str:
    """The first group of `pattern` in wrk's output."""
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {pattern!r} in wrk's output:\n{text}")
    return match.group(1)


def parse_ms(text: str) -> float:
    """One of wrk's durations (`812.00us`, `3.41ms`, `1.02s`) in milliseconds."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise RuntimeError(f"{text!r} is not one of wrk's durations")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def run_wrk(wrk: str, url: str, seconds: int, connections: int) -> WrkResult:
    done = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-H",
         f"X-API-Key: {API_KEY}", url],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    )  # fmt: skip
    out = done.stdout
    not_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.+)$", out, re.MULTILINE)
    return WrkResult(
        requests_per_s=float(found(r"Requests/sec:\s+([\d.]+)", out)),
        p50_ms=parse_ms(found(r"^\s+50%\s+(\S+)$", out)),
        p99_ms=parse_ms(found(r"^\s+99%\s+(\S+)$", out)),
        requests=int(found(r"(\d+) requests in", out)),
        not_2xx=int(not_2xx.group(1)) if not_2xx else 0,
        socket_errors=errors.group(1) if errors else "",
    )


def wait_for_workers(server: GunicornServer, workers: int) -> None:
    deadline = time.monotonic() + 180
    while server.stderr.count("Application startup complete") < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{workers} workers not started in 180 s:\n{server.stderr}")
        time.sleep(0.2)


def one_job(server: GunicornServer, inputs: Path) -> str:
    with server.client() as client:
        answer = client.post("/cli/run", json={
            "stage": "visualize", "command": "heatmap", "mode": "sync",
            "args": {"input": str(inputs / "field.npy"), "output": "h.png", "width": 320,
                     "height": 160, "no_coastline": True, "no_borders": True,
                     "no_gridlines": True}}).json()  # fmt: skip
        assert answer["exit_code"] == 0, answer
        assert client.get(f"/jobs/{answer['job_id']}").status_code == 200
    return answer["job_id"]


def measure(quick: bool) -> list[Table]:
    seconds = QUICK_DURATION_S if quick else DURATION_S
    cores = usable_cpus()
    setups = [Setup("local", "local", 1), Setup("Kubernetes (no cluster)", "kubernetes", 1)]
    if cores > 1:
        setups.append(Setup("Kubernetes (no cluster)", "kubernetes", cores))
    wrk, wrk_source = wrk_binary()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="zyra-bench-rps-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        inputs = root / "inputs"
        inputs.mkdir()
        np.save(inputs / "field.npy", np.random.default_rng(0).random((90, 180)))
        (root / "kubeconfig").write_text(NO_CLUSTER)
        redis_server = stack.enter_context(deployed_redis(root / "redis"))
        assert redis_server.process is not None
        redis_pid = redis_server.process.pid
        s3 = S3Server(root / "minio")
        s3.start()
        stack.callback(s3.stop)
        for i, setup in enumerate(setups):
            env = base_env(
                root / f"data-{i}",
                PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                ZYRA_ALLOWED_PATH_PREFIXES=str(inputs),
                ZYRA_REDIS_URL=redis_server.url,
                ZYRA_RATE_LIMIT_PER_PRINCIPAL=RATE_LIMIT,
                ZYRA_BACKEND=setup.backend,
                ZYRA_GUNICORN_WORKERS=str(setup.workers),
            )
            if setup.backend == "kubernetes":
                env |= {**s3.api_env(f"bench-rps-{i}"),
                        "ZYRA_K8S__KUBECONFIG": str(root / "kubeconfig")}  # fmt: skip
            server = start_gunicorn(GUNICORN, env, root / f"gunicorn-{i}")
            try:
                wait_for_workers(server, setup.workers)
                url = f"{server.url}/jobs/{one_job(server, inputs)}"
                run_wrk(wrk, url, max(1, seconds // 5), CONNECTIONS)  # warm-up
                sides = {"workers": server.workers(), "Redis": [redis_pid]}
                before = {side: cpu_seconds(*pids) for side, pids in sides.items()}
                wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
                loaded = run_wrk(wrk, url, seconds, CONNECTIONS)
                wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
                busy = {side: (cpu_seconds(*pids) - before[side]) / seconds
                        for side, pids in sides.items()}  # fmt: skip
                busy["wrk"] = (wrk_after.ru_utime + wrk_after.ru_stime - wrk_before.ru_utime
                               - wrk_before.ru_stime) / seconds  # fmt: skip
                alone = run_wrk(wrk, url, max(1, seconds // 2), 1)
                runs.append(Run(setup, loaded, alone, busy))
            finally:
                server.stop()
    return [table(runs, cores, seconds, wrk_source, quick)]


def table(runs: list[Run], cores: int, seconds: int, wrk_source: str, quick: bool) -> Table:
    out = Table(
        "`GET /jobs/{id}` under Gunicorn, Redis as the store",
        ["backend", "workers", "requests/s", f"p50 / p99 ms, {CONNECTIONS} connections",
         "p50 / p99 ms, 1 connection", "non-2xx", "CPU, cores: workers / Redis / wrk"],
    )  # fmt: skip
    notes = []
    for run in runs:
        loaded, alone = run.loaded, run.alone
        out.add(run.setup.label, run.setup.workers, f"{loaded.requests_per_s:.0f}",
                f"{loaded.p50_ms:.1f} / {loaded.p99_ms:.1f}",
                f"{alone.p50_ms:.1f} / {alone.p99_ms:.1f}", loaded.not_2xx + alone.not_2xx,
                " / ".join(f"{v:.2f}" for v in run.busy.values()))  # fmt: skip
        for r in (loaded, alone):
            if r.socket_errors:
                notes.append(f"{run.setup.label}, {run.setup.workers} worker(s): wrk's "
                             f"socket errors: {r.socket_errors}")  # fmt: skip
    out.notes += [
        f"{wrk_source}, one thread: {CONNECTIONS} keep-alive connections for {seconds} s "
        f"after {max(1, seconds // 5)} s of warm-up (requests/s and CPU come from this run; "
        f"its latency includes the wait behind the other requests in flight), then one "
        f"connection for {max(1, seconds // 2)} s (the time one request takes)"
        f"{'; quick: short runs' if quick else ''}. Every request is `GET /jobs/{{id}}` of "
        f"one finished sync heatmap with `X-API-Key`. wrk, Redis and the server share the "
        f"machine's {cores} cores.",
        "The production image's command: `gunicorn -c python:api.gunicorn_conf "
        "'api.server:create_app()'` (Uvicorn workers, access log to stdout, here a file). "
        "Redis: a local redis-server, AOF with `appendfsync everysec` as the chart runs it.",
        "Every request counts against its key's rate limit in Redis, raised to "
        f"{int(RATE_LIMIT):.0e} a minute so that none is refused (the default, 600 a minute, "
        "would answer 429).",
        "More than one worker needs ZYRA_BACKEND=kubernetes (which needs S3: a local "
        "MinIO); no cluster is attached (the kubeconfig names a closed port), so each "
        "worker's Job watcher retries in the background. The same setup with one worker "
        "shows what the workers add; `local` is the single-machine deployment "
        "(local backend and storage, Redis store).",
        *notes,
    ]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_DURATION_S} s per run, not {DURATION_S}")  # fmt: skip
    for t in measure(parser.parse_args().quick):
        print(t.markdown())
