"""Table 1: sync runs side by side: this service, Zyra's own bundled API, a fresh `zyra`.

Three commands on tiny inputs made here, offline (a heatmap of a 90x180 field, a
GRIB2 → NetCDF conversion, a CSV time series), each at 1, 4, 8 and 16 concurrent
clients: this service's sync `POST /cli/run` (started as the e2e tests start it, rate
limits and fair-share caps off), Zyra's bundled API (bench/zyra_api.py) and, at one
client, a fresh `zyra` process per run. The services' rounds alternate so that the
machine's load weighs on both alike. Every output is compared with the output of a
direct `zyra` run of the same command. Full: about 5 to 10 minutes on 2 busy cores;
`--quick`: 1 and 8 clients, a few runs each, about a minute.

`--sync-executor`: this service's sync runs fork in a separate sync executor
(`python -m runner.zygote --listen`), as in the chart, instead of the API's own
template process. `--checkout DIR`: measure another clone of this project (with its
own `.venv`, e.g. the previous release) as "this service"; two runs of the table,
one per checkout, compare them, Zyra's API being the yardstick of each.

    .venv/bin/python bench/sync_compare.py [--quick] [--sync-executor] [--checkout DIR]
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.tables import Table, ms
from bench.warm_command import WarmCommand
from bench.zyra_api import EXTRAS, clean_env, ensure_venv, start_zyra_api, stop_zyra_api
from runner.samples import write_grib2
from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api
from tests.e2e.sync_executor import SyncExecutor

LEVELS = (1, 4, 8, 16)
QUICK_LEVELS = (1, 8)  # the levels of the goals
SERVICE, ZYRA_API, CLI, WARM = "this service", "Zyra's API", "fresh zyra", "command alone"
GOAL_P50_RATIO, GOAL_RUNS_RATIO, GOAL_RUNS_CLIENTS = 0.8, 1.2, 8


@dataclass(frozen=True)
class Workload:
    name: str
    stage: str
    command: str
    args: dict[str, object]  # by name, as GET /cli/commands lists them; `output` apart
    suffix: str
    argv: Callable[[Path], list[str]]  # the same command for the `zyra` CLI, given its output

    def body(self, output: str) -> dict[str, object]:
        return {"stage": self.stage, "command": self.command, "mode": "sync",
                "args": {**self.args, "output": output}}  # fmt: skip


def make_inputs(folder: Path) -> list[Workload]:
    folder.mkdir(parents=True)
    field_npy, grib, series = folder / "field.npy", folder / "t2m.grib2", folder / "series.csv"
    np.save(field_npy, np.random.default_rng(0).random((90, 180)))
    write_grib2(grib)
    days = np.datetime64("2024-01-01") + np.arange(90)
    values = np.sin(np.arange(90) / 7).round(4)
    series.write_text(
        "time,value\n" + "".join(f"{d},{v}\n" for d, v in zip(days, values, strict=True))
    )
    map_flags = {"no_coastline": True, "no_borders": True, "no_gridlines": True}
    return [
        Workload(
            "heatmap 320x160 of a 90x180 .npy", "visualize", "heatmap",
            {"input": str(field_npy), "width": 320, "height": 160, **map_flags}, ".png",
            lambda out: ["visualize", "heatmap", "--input", str(field_npy), "--output",
                         str(out), "--width", "320", "--height", "160", "--no-coastline",
                         "--no-borders", "--no-gridlines"],
        ),
        Workload(
            "GRIB2 (8x4) → NetCDF", "process", "convert-format",
            {"file_or_url": str(grib), "format": "netcdf"}, ".nc",
            lambda out: ["process", "convert-format", str(grib), "netcdf", "--output", str(out)],
        ),
        Workload(
            "time series of a 90-row CSV", "visualize", "timeseries",
            {"input": str(series), "x": "time", "y": "value"}, ".png",
            lambda out: ["visualize", "timeseries", "--input", str(series), "--x", "time",
                         "--y", "value", "--output", str(out)],
        ),
    ]  # fmt: skip


def same_output(path: Path, reference: Path) -> bool:
    """Bytes for PNGs. A NetCDF from cfgrib carries a `history` attribute with the minute
    it was written and the name of Zyra's temporary copy of the GRIB2, so its bytes
    never match: its variables, coordinates and other attributes are compared."""
    if reference.suffix != ".nc":
        return path.read_bytes() == reference.read_bytes()
    import xarray as xr

    try:
        # As stored: decoding CF times trips over this xarray/pandas pair, and adds nothing.
        ours, theirs = (xr.load_dataset(p, decode_cf=False) for p in (path, reference))
    except (OSError, ValueError):
        return False
    for dataset in (ours, theirs):
        dataset.attrs.pop("history", None)
    return bool(ours.identical(theirs))


@dataclass
class Runs:
    """One contender's runs of one workload at one level of concurrency."""

    latencies: list[float] = field(default_factory=list)  # of the runs that succeeded
    outputs: list[Path | None] = field(default_factory=list)  # None: the run failed
    wall: float = 0.0

    def succeeded(self) -> int:
        return len(self.latencies)

    def failed(self) -> int:
        return len(self.outputs) - self.succeeded()

    def per_second(self) -> float:
        return self.succeeded() / self.wall if self.wall else 0.0


# Fresh connections for every request: a kept-alive one that the server closes as the
# next request leaves (uvicorn's 5 s idle timeout, met between rounds) would fail it.
FRESH = httpx.Limits(max_keepalive_connections=0)


class Contenders:
    """How one run is made on each: returns where its output can be read (None: failed).

    Zyra's API runs commands in threads of its one process, and some of the libraries
    they call are not thread-safe: when it dies, it is started again off the clock and
    the death is counted."""

    def __init__(self, service: ApiServer, tmp: Path) -> None:
        self.service_server, self.tmp, self.n = service, tmp, itertools.count()
        self.service = httpx.Client(
            base_url=service.url, headers={"X-API-Key": API_KEY}, timeout=300, limits=FRESH
        )
        self.jobs: dict[Path, str] = {}  # where a service output goes → its job id
        self.durations: list[float] = []  # its runs' own duration_s, this level
        self.deaths: list[str] = []  # how Zyra's API died, one entry a death
        self.zyra_api_server = start_zyra_api(tmp / "zyra-api-0")
        self.zyra_api = httpx.Client(base_url=self.zyra_api_server.url, timeout=300, limits=FRESH)
        self.out = tmp / "out"
        for name in (SERVICE, ZYRA_API, CLI, WARM):
            (self.out / name).mkdir(parents=True)
        self.warm = WarmCommand(ensure_venv() / "bin" / "python", self.out, clean_env())

    def close(self) -> None:
        self.service.close()
        self.zyra_api.close()
        stop_zyra_api(self.zyra_api_server)
        self.warm.close()

    def target(self, name: str, w: Workload) -> Path:
        return self.out / name / f"{next(self.n)}{w.suffix}"

    def run_service(self, w: Workload) -> Path | None:
        try:
            answer = self.service.post("/cli/run", json=w.body("output" + w.suffix)).json()
        except httpx.TransportError:
            return None
        if answer.get("exit_code") != 0:
            return None
        self.durations.append(answer["duration_s"])
        target = self.target(SERVICE, w)
        self.jobs[target] = answer["job_id"]  # downloaded after the level, off the clock
        return target

    def run_zyra_api(self, w: Workload) -> Path | None:
        target = self.target(ZYRA_API, w)
        try:
            answer = self.zyra_api.post("/cli/run", json=w.body(str(target))).json()
        except httpx.TransportError:
            return None
        return target if answer.get("exit_code") == 0 and target.exists() else None

    def run_cli(self, w: Workload) -> Path | None:
        target = self.target(CLI, w)
        zyra = Path(sys.executable).parent / "zyra"
        done = subprocess.run([str(zyra), *w.argv(target)], capture_output=True, cwd=self.out)
        return target if done.returncode == 0 else None

    def run_warm(self, w: Workload) -> Path | None:
        target = self.target(WARM, w)
        return target if self.warm.run(w.argv(target)) == 0 and target.exists() else None

    def revive_zyra_api(self, w: Workload) -> None:
        """After a round: if Zyra's API died, count it and start it again, warmed."""
        code = self.zyra_api_server.process.poll()
        if code is None:
            return
        self.deaths.append(signal.Signals(-code).name if code < 0 else f"exit {code}")
        self.zyra_api.close()
        self.zyra_api_server = start_zyra_api(self.tmp / f"zyra-api-{len(self.deaths)}")
        self.zyra_api = httpx.Client(base_url=self.zyra_api_server.url, timeout=300, limits=FRESH)
        self.run_zyra_api(w)

    def check_service(self) -> None:
        """This service dying would make every later run fail at once: stop, with its log."""
        process = self.service_server.process
        if process.poll() is not None:
            tail = self.service_server.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{SERVICE} exited with {process.returncode}:\n{tail}")

    def fetch_service_outputs(self, w: Workload) -> None:
        for target, job_id in self.jobs.items():
            params = {"file": "output" + w.suffix}
            reply = self.service.get(f"/jobs/{job_id}/download", params=params)
            reply.raise_for_status()
            target.write_bytes(reply.content)
        self.jobs.clear()


def one_round(run: Callable[[Workload], Path | None], w: Workload, clients: int,
              per_client: int, into: Runs) -> None:  # fmt: skip
    """`clients` threads, each making `per_client` runs one after the other."""

    def client() -> list[tuple[float, Path | None]]:
        made = []
        for _ in range(per_client):
            t = time.perf_counter()
            output = run(w)
            made.append((time.perf_counter() - t, output))
        return made

    with ThreadPoolExecutor(clients) as pool:
        t0 = time.perf_counter()
        results = [f.result() for f in [pool.submit(client) for _ in range(clients)]]
        into.wall += time.perf_counter() - t0
    for latency, output in itertools.chain.from_iterable(results):
        into.outputs.append(output)
        if output is not None:
            into.latencies.append(latency)


def identical(runs: Runs, reference: Path) -> str:
    same = sum(1 for o in runs.outputs if o is not None and same_output(o, reference))
    return f"{same}/{len(runs.outputs)}"


def measure_workload(
    w: Workload, c: Contenders, table: Table, one_client: Table, quick: bool
) -> None:
    reference = c.out / f"reference{w.suffix}"
    zyra = Path(sys.executable).parent / "zyra"
    subprocess.run([str(zyra), *w.argv(reference)], check=True, capture_output=True, cwd=c.out)
    # One untimed run each first: Zyra's API imports a command's modules on first use.
    for run in (c.run_service, c.run_zyra_api, c.run_warm):
        if run(w) is None:
            raise RuntimeError(f"{w.name}: the warm-up run failed on {run.__name__}")
    c.jobs.clear()
    # Full: four short rounds each, in turn (A B B A A B B A), so that a burst of load
    # from elsewhere lands on both; at least 20 runs per contender and level.
    rounds = 1 if quick else 4
    for clients in QUICK_LEVELS if quick else LEVELS:
        per_client = (2 if quick else 5) if clients == 1 else (1 if quick else max(1, 8 // clients))
        runs = {SERVICE: Runs(), ZYRA_API: Runs(), CLI: Runs(), WARM: Runs()}
        contenders: list[tuple[str, Callable[[Workload], Path | None], int]] = [
            (SERVICE, c.run_service, per_client), (ZYRA_API, c.run_zyra_api, per_client)
        ]  # fmt: skip
        if clients == 1:
            contenders.append((CLI, c.run_cli, 1 if quick else 2))
            contenders.append((WARM, c.run_warm, per_client))
        deaths_before = len(c.deaths)
        c.durations.clear()
        for r in range(rounds):
            for name, run, n in contenders[:: 1 if r % 2 == 0 else -1]:
                one_round(run, w, clients, n, runs[name])
                c.revive_zyra_api(w)
        c.check_service()
        c.fetch_service_outputs(w)
        ours, theirs = runs[SERVICE], runs[ZYRA_API]
        deaths = c.deaths[deaths_before:]
        failed = f"{ours.failed()} · {theirs.failed()}"
        if deaths:
            failed += f" ({len(deaths)} crash{'es' if len(deaths) > 1 else ''}: "
            failed += ", ".join(sorted(set(deaths))) + ")"
        table.add(
            w.name, clients, times(ours), times(theirs), ratio(p50(ours), p50(theirs)),
            f"{ours.per_second():.1f}", f"{theirs.per_second():.1f}",
            ratio(ours.per_second(), theirs.per_second()),
            times(runs[CLI]) if clients == 1 else "-",
            f"{identical(ours, reference)} · {identical(theirs, reference)}", failed,
        )  # fmt: skip
        print(f"  {w.name}, {clients} clients: {table.rows[-1][2:]}", flush=True)
        if clients == 1:
            ours_p50, command_p50 = p50(ours), float(np.median(c.durations or [0.0]))
            one_client.add(
                w.name, f"{p50(theirs) * 1000:.0f}", f"{GOAL_P50_RATIO * p50(theirs) * 1000:.0f}",
                f"{p50(runs[WARM]) * 1000:.0f}", ratio(p50(runs[WARM]), p50(theirs)),
                f"{ours_p50 * 1000:.0f}", f"{command_p50 * 1000:.0f}",
                f"{(ours_p50 - command_p50) * 1000:.0f}",
            )  # fmt: skip


def times(runs: Runs) -> str:
    return ms(runs.latencies) if runs.latencies else "-"


def p50(runs: Runs) -> float:
    return float(np.median(runs.latencies)) if runs.latencies else 0.0


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if ours and theirs else "-"


def column(table: Table, starts: str) -> int:
    return next(i for i, name in enumerate(table.columns) if name.startswith(starts))


def identical_total(table: Table, rows: list[list[str]], side: int) -> str:
    """Sums a side (0: this service, 1: Zyra's API) of the rows' "a/b · c/d" cells."""
    pairs = [r[column(table, "identical")].split(" · ")[side].split("/") for r in rows]
    same, total = (sum(int(p[i]) for p in pairs) for i in (0, 1))
    return f"{same}/{total}" + (" (all)" if same == total else "")


def goal_notes(table: Table) -> list[str]:
    """Whether the issue's goals for this table were met, workload by workload."""
    notes = []
    for name in dict.fromkeys(row[0] for row in table.rows):
        rows = [r for r in table.rows if r[0] == name]
        p50, levels = [r[column(table, "p50 ratio")] for r in rows], [r[1] for r in rows]
        runs_ratio = column(table, "runs/s ratio")
        at8 = next((r[runs_ratio] for r in rows if r[1] == str(GOAL_RUNS_CLIENTS)), "-")
        notes.append(
            f"{name}: p50 ratio {', '.join(p50)} at {', '.join(levels)} clients "
            f"(goal ≤ {GOAL_P50_RATIO}), runs/s ratio at {GOAL_RUNS_CLIENTS} clients {at8} "
            f"(goal ≥ {GOAL_RUNS_RATIO}); outputs identical: {SERVICE} "
            f"{identical_total(table, rows, 0)}, {ZYRA_API} {identical_total(table, rows, 1)}"
        )
    return notes


def measure(quick: bool, sync_executor: bool = False, checkout: Path | None = None) -> list[Table]:
    variant = [
        *(["quick"] if quick else []),
        *(["sync executor"] if sync_executor else []),
        *([f"checkout {checkout}"] if checkout else []),
    ]
    table = Table(
        "1. Sync runs: this service vs Zyra's bundled API"
        + (f" ({', '.join(variant)})" if variant else ""),
        ["workload", "clients", f"{SERVICE} p50 / p95 ms", f"{ZYRA_API} p50 / p95 ms",
         "p50 ratio", f"{SERVICE} runs/s", f"{ZYRA_API} runs/s", "runs/s ratio",
         "fresh `zyra` p50 / p95 ms", "identical outputs (this · Zyra's API)",
         "failed runs (this · Zyra's API)"],
    )  # fmt: skip
    one_client = Table(
        "One client: the command alone, and what is around it (p50 ms, the same rounds)",
        ["workload", f"{ZYRA_API}", f"goal: {GOAL_P50_RATIO} of it",
         "the command alone, in Zyra's process", "command alone ÷ Zyra's API",
         SERVICE, "its command's process (duration_s)", "around it: HTTP, job, files"],
    )  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="zyra-bench-sync-"))
    try:
        workloads = make_inputs(tmp / "inputs")  # apart: an allowed prefix may not hold data
        with ExitStack() as stack:
            env = {}
            if sync_executor:
                executor = SyncExecutor(tmp / "pod" / "executor.sock", tmp / "executor.log")
                executor.start()
                stack.callback(executor.stop)
                env = {"ZYRA_SYNC_EXECUTOR_SOCKET": str(executor.socket),
                       "ZYRA_WORK_DIR": str(tmp / "pod" / "work")}  # fmt: skip
            service = start_api(tmp / "service", tmp / "inputs", checkout=checkout, **env)
            stack.callback(stop_api, service)
            contenders = Contenders(service, tmp)
            stack.callback(contenders.close)
            for w in workloads:
                measure_workload(w, contenders, table, one_client, quick)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table.notes += [
        "Latency: from sending `POST /cli/run` (sync) to its answer, with the output file "
        "written; p50 / p95 over the runs that succeeded. runs/s: runs that succeeded ÷ "
        "wall time of the rounds, each client sending its next request as soon as it has "
        "the answer. Ratios: this service ÷ Zyra's API. One untimed run of each command "
        "on each API first; rounds of the two APIs alternate (A B B A …).",
        "This service: `python -m api` (one uvicorn worker; sync runs forked from its "
        "template process, at most ZYRA_SYNC_CONCURRENCY = 8 at once), rate limits and "
        "fair-share caps off; outputs downloaded after each level, off the clock. Zyra's "
        f"API: `uvicorn zyra.api.server:app`, one process, in a venv of its own "
        f"(zyra[{EXTRAS}] with this project's constraints.txt), no `ZYRA_API_KEY` (Zyra "
        "then takes requests without a key); it runs a sync command in the server "
        "process, in a thread of the request pool, writing to the absolute `output` "
        "path given. A new connection per request on both.",
        "Fresh `zyra`: one `zyra` process per run, at one client, run in turn with the APIs.",
        "Identical outputs: each output compared with a direct `zyra` run's. PNGs: "
        "byte for byte. NetCDF: cfgrib writes a `history` attribute with the minute and "
        "the name of Zyra's temporary copy of the GRIB2, so no two runs' bytes match; "
        "the variables, coordinates and attributes other than `history`, as stored, are "
        "compared (xarray `identical`). A failed run counts as not identical.",
        "Failed runs: an error answer, or no answer. Crashes: Zyra's API process died "
        "(by the signal named); it runs commands in threads of one process, and eccodes "
        "and netCDF-C are not thread-safe. The bench starts it again, off the clock, and "
        "goes on; the runs it dropped count as failed.",
        f"Goals (issue 14): p50 ratio ≤ {GOAL_P50_RATIO}, runs/s ratio at "
        f"{GOAL_RUNS_CLIENTS} clients ≥ {GOAL_RUNS_RATIO}, every output identical.",
        *goal_notes(table),
        "From 4 clients on, each API serves runs as fast as it can and every client waits "
        "for the others' runs: p50 is about clients ÷ runs/s, so a p50 ratio of 0.8 asks for "
        "1.25 times Zyra's runs/s at that many clients. What a run costs in CPU, and what "
        "the runs/s goal leaves for it, is in the table “Where a sync run's CPU goes”; "
        "at 1 client, what the command alone takes is in the next table.",
    ]
    one_client.notes += [
        "The command alone: Zyra's `cli.main` called again and again in one warm process "
        "of Zyra's API's venv, with its defaults, in turn with the APIs' rounds at one "
        "client (bench/warm_command.py): what Zyra's API spends on the command itself, "
        "without HTTP or a thread hop. Where it is above the goal, Zyra's API answers in "
        "little more than its command takes, and no service can answer within the goal "
        "unless its command runs faster than in Zyra's own warm process.",
        f"{SERVICE.capitalize()}: its answer's p50, and the p50 of the same runs' "
        "`duration_s`: from handing the command to its process (forked ahead from the "
        "template) to its exit code, confinement included. Around it: what the answer "
        "takes beyond that (HTTP, authentication, the job record and its events, the "
        "job's folders, keeping the outputs). Its command's process runs with one BLAS "
        "thread where Zyra runs OpenBLAS's pool, and Zyra's API keeps every figure a "
        "command opened.",
    ]
    if sync_executor:
        table.notes.append(
            "Sync executor: this service's sync runs forked by a `python -m runner.zygote "
            "--listen` process of their own (the chart's sync-executor container), reached "
            "through its socket, not by the API's own template process."
        )
    return [table, one_client]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 8 clients, fewer runs")
    parser.add_argument("--sync-executor", action="store_true",
                        help="sync runs in a sync executor process, as in the chart")  # fmt: skip
    parser.add_argument("--checkout", type=Path,
                        help="another clone (with its .venv) measured as this service")  # fmt: skip
    args = parser.parse_args()
    for t in measure(args.quick, args.sync_executor, args.checkout):
        print(t.markdown())
