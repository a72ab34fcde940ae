"""Event latency: from a runner's write to a WebSocket client, with one client and with
many on one job, on the embedded store and on Redis.

For each store: starts the API on a free port (and a redis-server), submits an async
job that stays running (`acquire http` from a loopback server that never answers),
then appends events to that job's log from this process exactly as its runner would
(`runner/events.py`, `EventLog.append(job_id, stdout=...)`), at known times, while
clients in other processes follow `WS /ws/jobs/{id}`. An event's latency is the client's
receipt time minus the time just before its append, both from this machine's clock.
Then the job is cancelled: every stream should end with its terminal message and 1000.

    .venv/bin/python bench/event_latency.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import resource
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from api.streams.sqlite_feed import POLL_S
from bench.cpu import cpu_seconds
from bench.services import deployed_redis
from bench.tables import Table, percentile
from runner.events import EventLog, RedisEventLog, SqliteEventLog
from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api

MARKER = "bench-event "  # the stdout of the events this bench writes: MARKER + index
TERMINAL = {"succeeded", "failed", "cancelled"}
HANDSHAKES_AT_ONCE = 50  # per client process
CLIENT_PROCESSES = 2  # for many clients: a Python process decodes ~500 sockets slowly
GOAL_P99_S = 0.05


@dataclass(frozen=True)
class Phase:
    clients: int
    events: int
    interval_s: float  # mean time between writes; each is jittered ±50 %


FULL = (Phase(1, 300, 0.02), Phase(500, 100, 0.1))
QUICK = (Phase(1, 100, 0.02), Phase(50, 50, 0.05))


@dataclass
class Follower:
    """What one client saw."""

    received: dict[int, float] = field(default_factory=dict)  # event index → receipt time
    ended: bool = False  # got the terminal message
    close_code: int | None = None
    error: str = ""


@dataclass
class PhaseResult:
    store: str
    phase: Phase
    written: list[float]  # per event index: the time just before its append
    followers: list[Follower]
    api_busy: float  # CPU of the API process while the events went out, in cores
    clients_busy: float  # the same, of the client processes together

    @property
    def latencies(self) -> list[float]:
        return [t - self.written[i] for f in self.followers for i, t in f.received.items()]

    @property
    def lost(self) -> int:
        return sum(len(self.written) - len(f.received) for f in self.followers)


# --- clients (in processes of their own) -------------------------------------------------


async def follow(url: str, handshakes: asyncio.Semaphore, ready: asyncio.Queue) -> Follower:
    seen = Follower()
    signalled = False
    try:
        async with handshakes:
            ws = await connect(url, additional_headers={"X-API-Key": API_KEY}, open_timeout=120)
        async with ws:
            async for raw in ws:
                now = time.time()
                if not signalled:  # the history has begun: this client is following
                    signalled = True
                    ready.put_nowait(True)
                message = json.loads(raw)
                text = message.get("stdout", "")
                if text.startswith(MARKER):
                    seen.received[int(text[len(MARKER) :])] = now
                seen.ended = seen.ended or message.get("status") in TERMINAL
        seen.close_code = ws.close_code
    except ConnectionClosed as closed:
        seen.close_code = closed.rcvd.code if closed.rcvd else None
        seen.error = str(closed)
    except Exception as exc:  # reported in the table's notes, not raised
        seen.error = f"{type(exc).__name__}: {exc}"
    finally:
        if not signalled:
            ready.put_nowait(False)
    return seen


async def follow_all(url: str, count: int, pipe: Connection) -> None:
    handshakes, ready = asyncio.Semaphore(HANDSHAKES_AT_ONCE), asyncio.Queue()
    tasks = [asyncio.create_task(follow(url, handshakes, ready)) for _ in range(count)]
    following = [await ready.get() for _ in range(count)]
    pipe.send(sum(following))
    pipe.send(await asyncio.gather(*tasks))


def clients_process(url: str, count: int, pipe: Connection) -> None:
    asyncio.run(follow_all(url, count, pipe))


# --- the writer and the job -------------------------------------------------------------


@contextmanager
def silent_url() -> Iterator[str]:
    """A loopback server that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/never"


def running_job(client: httpx.Client, url: str) -> str:
    """An async job that stays `running`, writing nothing, until cancelled."""
    answer = client.post("/cli/run", json={
        "stage": "acquire", "command": "http", "mode": "async", "timeout_s": 600,
        "args": {"url": url, "output": "never"}})  # fmt: skip
    job_id = answer.json()["job_id"]
    deadline = time.monotonic() + 60
    while client.get(f"/jobs/{job_id}").json()["status"] != "running":
        assert time.monotonic() < deadline, f"job {job_id} not running after 60 s"
        time.sleep(0.05)
    return job_id


def write_events(log: EventLog, job_id: str, phase: Phase) -> list[float]:
    """Append the phase's events as a runner does, each at its time, jittered so that
    writes fall at every phase of the readers' polling."""
    jitter = random.Random(0)
    written = []
    due = time.monotonic()
    for i in range(phase.events):
        due += phase.interval_s * jitter.uniform(0.5, 1.5)
        time.sleep(max(0.0, due - time.monotonic()))
        written.append(time.time())
        log.append(job_id, stdout=f"{MARKER}{i}\n")
    return written


def start_clients(ws_url: str, clients: int) -> tuple[list[Connection], list[BaseProcess]]:
    """`clients` WebSocket clients of `ws_url`, shared among client processes; a pipe
    to each process."""
    spawn = multiprocessing.get_context("spawn")
    processes = CLIENT_PROCESSES if clients > 1 else 1
    pipes, children = [], []
    for i in range(processes):
        share = clients // processes + (i < clients % processes)
        ours, theirs = spawn.Pipe()
        child = spawn.Process(target=clients_process, args=(ws_url, share, theirs))
        child.start()
        pipes.append(ours)
        children.append(child)
    return pipes, children


def run_phase(server: ApiServer, log: EventLog, store: str, phase: Phase, url: str) -> PhaseResult:
    with server.client() as client:
        job_id = running_job(client, url)
        ws_url = server.url.replace("http://", "ws://") + f"/ws/jobs/{job_id}"
        pipes, children = start_clients(ws_url, phase.clients)
        pids = [child.pid for child in children if child.pid is not None]
        try:
            following = sum(receive(pipe, 180) for pipe in pipes)
            if following < phase.clients:
                print(f"{store}: only {following} of {phase.clients} clients following",
                      file=sys.stderr)  # fmt: skip
            time.sleep(1.0)  # every history sent: what follows is live
            api_before, clients_before = cpu_seconds(server.process.pid), cpu_seconds(*pids)
            started = time.monotonic()
            written = write_events(log, job_id, phase)
            time.sleep(2.0)  # the last events reach every client before the end
            elapsed = time.monotonic() - started
            api_busy = (cpu_seconds(server.process.pid) - api_before) / elapsed
            clients_busy = (cpu_seconds(*pids) - clients_before) / elapsed
            client.delete(f"/jobs/{job_id}")
            followers = [f for pipe in pipes for f in receive(pipe, 120)]
        finally:
            for child in children:
                child.join(timeout=10)
                if child.is_alive():
                    child.kill()
    return PhaseResult(store, phase, written, followers, api_busy, clients_busy)


def receive(pipe: Connection, timeout_s: float) -> Any:  # what the client process sent
    if not pipe.poll(timeout_s):
        raise TimeoutError(f"a client process said nothing for {timeout_s:.0f} s")
    return pipe.recv()


# --- the runs ---------------------------------------------------------------------------


def raise_open_files(needed: int) -> None:
    """The API and the client processes inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def measure(quick: bool) -> list[Table]:
    phases = QUICK if quick else FULL
    most = max(p.clients for p in phases)
    raise_open_files(2 * most + 256)
    streams = {"ZYRA_MAX_STREAMS": str(most + 50), "ZYRA_MAX_STREAMS_PER_PRINCIPAL": str(most + 50)}
    results: list[PhaseResult] = []
    with tempfile.TemporaryDirectory(prefix="zyra-bench-events-") as tmp, silent_url() as url:
        root = Path(tmp)
        (root / "inputs").mkdir()
        server = start_api(root / "embedded", root / "inputs", **streams)
        try:
            log = SqliteEventLog(server.data_dir / "events.sqlite3")
            results += [run_phase(server, log, "embedded", p, url) for p in phases]
        finally:
            stop_api(server)
        with deployed_redis(root / "redis") as redis_server:
            server = start_api(root / "redis-api", root / "inputs",
                               ZYRA_REDIS_URL=redis_server.url, **streams)  # fmt: skip
            try:
                log = RedisEventLog(redis_server.url)
                results += [run_phase(server, log, "Redis", p, url) for p in phases]
            finally:
                stop_api(server)
    return [table(results, quick)]


def p50_p99_ms(seconds: list[float]) -> str:
    if not seconds:
        return "no event received"
    return f"{percentile(seconds, 0.5) * 1000:.1f} / {percentile(seconds, 0.99) * 1000:.1f}"


def table(results: list[PhaseResult], quick: bool) -> Table:
    out = Table(
        "Event latency: a runner's write → a WebSocket client, loopback",
        ["store", "clients", "events written", "events lost", "streams ended (close code)",
         "latency p50 / p99 ms", "CPU, cores: API / clients"],
    )  # fmt: skip
    notes: list[str] = []
    for r in results:
        codes = Counter(f.close_code for f in r.followers if f.ended)
        ended = ", ".join(f"{n} ({code})" for code, n in sorted(codes.items(), key=str))
        out.add(r.store, r.phase.clients, len(r.written), r.lost, ended or "none",
                p50_p99_ms(r.latencies), f"{r.api_busy:.2f} / {r.clients_busy:.2f}")  # fmt: skip
        early = [f for f in r.followers if not f.ended]
        if early:
            why = Counter(f.error or f"closed {f.close_code} without a terminal message"
                          for f in early)  # fmt: skip
            notes.append(f"{r.store}, {r.phase.clients} clients: {len(early)} streams ended "
                         f"early: " + "; ".join(f"{n}x {e}" for e, n in why.items()))  # fmt: skip
    single, many = results[0].phase, results[1].phase
    out.notes += [
        "Events appended to a running job's log from the bench process the way a runner "
        "does (`EventLog.append(job_id, stdout=...)`, runner/events.py), not by a "
        "command: latency = the client's receipt time minus the time just before the append "
        "(the write itself included), one clock. The job is a real async run (`acquire "
        "http` from a loopback server that never answers), cancelled at the end.",
        f"1 client: {single.events} events, one every {single.interval_s * 1000:.0f} ms on "
        f"average (±50 %, so writes fall at every phase of the embedded store's "
        f"{POLL_S * 1000:.0f} ms poll). "
        f"{many.clients} clients on one job: {many.events} events, one every "
        f"{many.interval_s * 1000:.0f} ms; the clients run in {CLIENT_PROCESSES} processes "
        "of asyncio `websockets` on the same 2 cores as the API, so client-side decoding "
        f"is part of their latency.{' Quick: fewer events and clients.' if quick else ''}",
        "Events lost = events written minus events received, summed over the clients. Streams "
        "ended: clients that got the terminal message (after the cancel), by close code. "
        "CPU: what the API process and the client processes used from the first write to "
        "2 s after the last, in cores (1.00 = one core all the time).",
        "One API process (`python -m api`, as the e2e tests start it), "
        f"ZYRA_MAX_STREAMS and ZYRA_MAX_STREAMS_PER_PRINCIPAL raised to {many.clients + 50}. "
        "Redis: a local redis-server, AOF with `appendfsync everysec` as the chart runs it.",
        *goal_notes(results),
        *notes,
    ]
    return out


def goal_notes(results: list[PhaseResult]) -> list[str]:
    notes = []
    for r in results:
        p99 = percentile(r.latencies, 0.99) if r.latencies else float("inf")
        label = f"{r.store}, {r.phase.clients} client{'s' * (r.phase.clients > 1)}"
        if r.phase.clients == 1:
            verdict = ("met" if p99 < GOAL_P99_S
                       else f"missed by {(p99 - GOAL_P99_S) * 1000:.1f} ms")  # fmt: skip
            notes.append(f"Goal p99 < {GOAL_P99_S * 1000:.0f} ms ({label}): {verdict}.")
        else:
            verdict = "met" if r.lost == 0 else f"missed: {r.lost} events lost"
            notes.append(f"Goal {r.phase.clients} clients with no event lost ({label}): "
                         f"{verdict}; p99 {p99 * 1000:.1f} ms.")  # fmt: skip
    return notes


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK[1].clients} clients, fewer events")  # fmt: skip
    for t in measure(parser.parse_args().quick):
        print(t.markdown())
