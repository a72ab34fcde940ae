"""Where a sync run's CPU goes: the API, its template process, the command's process;
and what a fork adds to the command itself, against Zyra's in-process call.

Part 1 runs the heatmap and the GRIB2 conversion of table 1 through this service (one
client, then 8 at once) and reads, from /proc, the CPU time (user + system) and minor
page faults that the API process, the template process and the command processes (the
template's reaped children) spent per run; then through Zyra's own API at 8 clients,
its one process's CPU likewise. Part 2 runs the same commands in one warm Python process,
first by calling Zyra's `cli.main` again in that process (what Zyra's own API does),
then in a child forked from it after `gc.freeze()` (what this service does, minus
everything around it), each child's CPU and faults read from getrusage. Part 3 makes a
process a template as the service does and forks spares from it as the service does
while a core is idle: each runs a command twice, its first run timed apart from its
second (table "A command's first run in its process").

    .venv/bin/python bench/sync_cpu.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.sync_compare import FRESH, Workload, make_inputs
from bench.tables import Table
from bench.zyra_api import start_zyra_api, stop_zyra_api
from tests.e2e.conftest import API_KEY, start_api, stop_api
from tests.e2e.sync_executor import children

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """A process's CPU time and minor faults so far: its own and its reaped children's."""

    cpu_ms: float
    faults: int
    children_cpu_ms: float
    children_sys_ms: float
    children_faults: int

    @classmethod
    def of(cls, pid: int) -> Usage:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        # After the name: minflt 8, cminflt 9, utime 11, stime 12, cutime 13, cstime 14.
        return cls(
            (int(fields[11]) + int(fields[12])) * TICK_MS, int(fields[7]),
            (int(fields[13]) + int(fields[14])) * TICK_MS, int(fields[14]) * TICK_MS,
            int(fields[8]),
        )  # fmt: skip


@dataclass(frozen=True)
class Level:
    """What one level of concurrency cost, per run."""

    runs_per_s: float
    cpu_ms: float  # all the processes that served it
    cores: float  # their CPU over the wall time: how many cores they kept busy


def _level_name(who: str, clients: int) -> str:
    return f"{who}, {clients} client{'s' if clients > 1 else ''}"


def _warm(one: Callable[[int], bool]) -> None:
    """Before measuring: first runs of a command import what it needs."""
    for n in range(3):
        one(-1 - n)


def _run_all(runs: int, clients: int, one: Callable[[int], bool]) -> tuple[float, int]:
    """The wall time of `runs` calls of `one`, `clients` at a time, and how many failed."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(one, range(runs)))
    return time.perf_counter() - started, done.count(False)


def through_the_service(runs: int, clients: int, body: dict, service_url: str,
                        api_pid: int) -> tuple[list[list[str]], Level]:  # fmt: skip
    [template] = children(api_pid)
    with httpx.Client(base_url=service_url, headers={"X-API-Key": API_KEY}, timeout=300,
                      limits=FRESH) as client:  # fmt: skip

        def one(_: int) -> bool:
            return client.post("/cli/run", json=body).json()["exit_code"] == 0

        _warm(one)
        time.sleep(0.5)  # the warm-ups' processes end (they answer before they exit)
        before = {pid: Usage.of(pid) for pid in (api_pid, template)}
        wall, failed = _run_all(runs, clients, one)
        time.sleep(0.5)  # the measured ones end and are reaped
        after = {pid: Usage.of(pid) for pid in (api_pid, template)}
    if failed:
        raise RuntimeError(f"{failed} of {runs} runs through the service failed")
    api = (after[api_pid].cpu_ms - before[api_pid].cpu_ms) / runs
    own = (after[template].cpu_ms - before[template].cpu_ms) / runs
    command = (after[template].children_cpu_ms - before[template].children_cpu_ms) / runs
    system = (after[template].children_sys_ms - before[template].children_sys_ms) / runs
    faults = (after[template].children_faults - before[template].children_faults) / runs
    level = Level(runs / wall, api + own + command, (api + own + command) * runs / wall / 1000)
    name = _level_name("this service", clients)
    return [
        [name, "API process", f"{api:.1f}", "-", ""],
        [name, "template process (forks, hand-over)", f"{own:.1f}", "-", ""],
        [name, "command process (forked child)", f"{command:.1f} (system {system:.1f})",
         f"{faults:.0f}", ""],
        [name, "all three", f"{level.cpu_ms:.1f}", "-",
         f"{level.runs_per_s:.1f} runs/s, {level.cores:.2f} cores"],
    ], level  # fmt: skip


def through_zyra_api(runs: int, clients: int, workload: Workload, folder: Path
                     ) -> tuple[list[str], Level]:  # fmt: skip
    """The same runs through Zyra's own API: one process, commands in its threads."""
    server = start_zyra_api(folder)
    targets = itertools.count()
    try:
        with httpx.Client(base_url=server.url, timeout=300, limits=FRESH) as client:

            def one(_: int) -> bool:
                target = folder / f"out-{next(targets)}{workload.suffix}"
                try:
                    answer = client.post("/cli/run", json=workload.body(str(target))).json()
                except httpx.TransportError:  # it crashed (eccodes is not thread-safe)
                    return False
                return answer.get("exit_code") == 0 and target.exists()

            _warm(one)
            before = Usage.of(server.process.pid)
            wall, failed = _run_all(runs, clients, one)
            after = Usage.of(server.process.pid)
        crashed = server.process.poll() is not None
    finally:
        stop_zyra_api(server)
    done = max(1, runs - failed)  # its runs/s, as table 1's, counts the runs that succeeded
    cpu = (after.cpu_ms - before.cpu_ms) / done
    level = Level(done / wall, cpu, cpu * done / wall / 1000)
    lost = f"; {failed} of {runs} failed{' (it crashed)' if crashed else ''}" if failed else ""
    return [_level_name("Zyra's API", clients), "its server process", f"{cpu:.1f}",
            f"{(after.faults - before.faults) / done:.0f}",
            f"{level.runs_per_s:.1f} runs/s, {level.cores:.2f} cores{lost}"], level  # fmt: skip


def in_one_process(runs: int, argv: list[str]) -> dict[str, float]:
    """A Zyra command called again in a warm process, then in children forked from it
    (run in a process of its own, as `--probe`)."""
    from zyra.cli import main

    def call() -> None:
        with contextlib.suppress(SystemExit):  # zyra's main exits with the code
            main(argv)

    for _ in range(3):
        call()
    cpu, wall, faults = time.process_time(), time.perf_counter(), resource.getrusage(0).ru_minflt
    for _ in range(runs):
        call()
    result = {
        "in_cpu_ms": (time.process_time() - cpu) * 1000 / runs,
        "in_wall_ms": (time.perf_counter() - wall) * 1000 / runs,
        "in_faults": (resource.getrusage(0).ru_minflt - faults) / runs,
    }
    gc.collect()
    gc.freeze()  # as the template does
    before, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    for _ in range(runs):
        pid = os.fork()
        if pid == 0:
            call()
            os._exit(0)
        os.waitpid(pid, 0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result |= {
        "fork_cpu_ms": (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        * 1000 / runs,
        "fork_sys_ms": (after.ru_stime - before.ru_stime) * 1000 / runs,
        "fork_wall_ms": (time.perf_counter() - wall) * 1000 / runs,
        "fork_faults": (after.ru_minflt - before.ru_minflt) / runs,
    }  # fmt: skip
    return result


OUT = "OUTPUT"  # in a probe's argv: where each run writes its own output


def in_a_template(runs: dict[str, int], argvs: dict[str, list[str]]) -> dict[str, list]:
    """Per workload, [first run ms, its faults, second run ms, its faults] for each spare
    (run in a process of its own, as `--template-probe`)."""
    from runner.child import run_zyra
    from runner.fork_output import output_of_fork
    from runner.lean_template import prefault_heap
    from runner.zygote import warm_template

    failed, written = warm_template()
    if failed:
        raise RuntimeError(f"the template's warm-up failed: {failed}")
    devnull = os.open(os.devnull, os.O_WRONLY)

    def timed(argv: list[str], n: int) -> tuple[float, int]:
        argv = [f"{a}-{n}" if a == OUT else a for a in argv]
        faults, started = resource.getrusage(0).ru_minflt, time.perf_counter()
        if run_zyra(argv) != 0:
            raise RuntimeError(f"{argv} failed")
        return (time.perf_counter() - started) * 1000, resource.getrusage(0).ru_minflt - faults

    found: dict[str, list] = {}
    for name, argv in argvs.items():
        found[name] = []
        for n in range(runs[name]):

            def spare(argv: list[str] = argv, n: int = n) -> bytes:
                """What runner/spare.py does while a core is idle, then the command twice."""
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                prefault_heap()
                written.copy_ahead()
                time.sleep(0.02)  # as a spare waits for its request
                first, second = timed(argv, 2 * n), timed(argv, 2 * n + 1)
                return json.dumps([*first, *second]).encode()

            data = output_of_fork(spare, f"a spare running {name}")
            found[name].append(json.loads(data))
    return found


def first_runs(runs: int, workloads: list[Workload], tmp: Path) -> Table:
    table = Table(
        "A command's first run in its process, and a second in the same one (p50)",
        ["workload", "first run ms", "its minor faults", "second run ms", "its minor faults",
         "first minus second ms"],
    )  # fmt: skip
    # The time series runs ~10 times longer than the others: fewer of it.
    counts = {w.name: max(3, runs // 4) if "series" in w.name else runs for w in workloads}
    argvs = {w.name: w.argv(tmp / OUT) for w in workloads}
    probe = subprocess.run(
        [sys.executable, __file__, "--template-probe", json.dumps(counts), json.dumps(argvs)],
        capture_output=True, text=True, cwd=tmp,
    )  # fmt: skip
    if probe.returncode != 0:
        raise RuntimeError(f"the template probe failed: {probe.stderr[-2000:]}")
    found = json.loads(probe.stdout.splitlines()[-1])
    for name, rows in found.items():
        first, first_faults, second, second_faults = (
            statistics.median(r[i] for r in rows) for i in range(4)
        )
        table.add(name, f"{first:.1f}", f"{first_faults:.0f}", f"{second:.1f}",
                  f"{second_faults:.0f}", f"{first - second:+.1f}")  # fmt: skip
    table.notes += [
        f"A process made a template as the service makes one (runner/zygote.py: Zyra and "
        f"its libraries loaded, the warm-ups run, the heap frozen and collapsed, the "
        f"pages commands write to learned), then {runs} spares forked from it as the "
        f"service forks one while a core is idle (8 MiB of heap mapped, those pages "
        f"copied ahead; {counts[workloads[-1].name]} for the time series). Each spare runs "
        f"the command twice, in its own process, timed from Zyra's parsers to the exit "
        f"code; not confined (the service's confinement adds ~2 ms before the first).",
        "The first run is what a sync request gets; the second is the same command in a "
        "process that has just run it, as Zyra's own API runs every command. Both run the "
        "same Python (cProfile counts the same calls, but for tempfile seeding a new "
        "random generator after the fork), and the first faults only a few hundred pages "
        "more (~1 ms). The rest is spread thinly over the libraries' and Python's own "
        "code (cProfile puts no more than ~2 ms on any one function; eccodes' calls the "
        "most), as in a process whose CPU caches and TLB have not seen the work yet: this "
        "machine's VM offers no hardware counters to say which. It bounds table 1's "
        "one-client ratio: a new process for each run is what keeps one caller's run out "
        "of another's.",
    ]
    return table


def measure(quick: bool) -> list[Table]:
    runs = 12 if quick else 40
    table = Table(
        "Where a sync run's CPU goes (heatmap and GRIB2 of table 1)"
        + (" (quick)" if quick else ""),
        ["workload", "how it ran", "process", "CPU ms per run", "minor faults per run",
         "throughput"],
    )  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="zyra-bench-cpu-"))
    workloads = make_inputs(tmp / "inputs")
    measured = workloads[:2]  # the time series meets its goals by far (table 1)
    levels: dict[str, dict[str, Level]] = {w.name: {} for w in measured}
    service = start_api(tmp / "service", tmp / "inputs")
    try:
        for w in measured:
            for clients in (1, 8):
                rows, levels[w.name][f"service {clients}"] = through_the_service(
                    runs, clients, w.body("output" + w.suffix), service.url, service.process.pid
                )
                for row in rows:
                    table.add(w.name, *row)
    finally:
        stop_api(service)
    for w in measured:
        row, levels[w.name]["zyra 8"] = through_zyra_api(runs, 8, w, tmp / f"zyra-{w.suffix[1:]}")
        table.add(w.name, *row)
    for w in measured:
        argv = json.dumps(w.argv(tmp / f"o{w.suffix}"))
        probe = subprocess.run(
            [sys.executable, __file__, "--probe", str(runs), argv],
            capture_output=True, text=True, check=True, cwd=tmp,
        )  # fmt: skip
        found = json.loads(probe.stdout.splitlines()[-1])
        table.add(w.name, "Zyra's `cli.main` again in one warm process", "that process",
                  f"{found['in_cpu_ms']:.1f}", f"{found['in_faults']:.0f}",
                  f"{found['in_wall_ms']:.0f} ms a run")  # fmt: skip
        table.add(w.name, "the same, each run in a child forked from it", "the child",
                  f"{found['fork_cpu_ms']:.1f} (system {found['fork_sys_ms']:.1f})",
                  f"{found['fork_faults']:.0f}",
                  f"{found['fork_wall_ms']:.0f} ms a run")  # fmt: skip
    table.notes += [
        f"{runs} runs at each level. CPU: user + system time from /proc/PID/stat (the "
        "command processes' as the template's reaped children), divided by the runs; "
        "minor faults likewise (a fault is a page the process touched for the first time: "
        "a copy-on-write copy of a template page, or a new zeroed one). Cores: the CPU of "
        "the processes named over the wall time of the level (2.00 = both cores all the "
        "time). Zyra's API: its uvicorn process (bench/zyra_api.py), 8 clients, a new "
        "connection per request as in table 1.",
        *(_throughput_bound(name, found) for name, found in levels.items()),
        "The forked child does the same work as the warm process, plus copying each "
        "template page it writes to (Python's reference counts write to every object it "
        "touches) and faulting in fresh memory that a process reusing its own heap "
        "already has: that is the difference between the last two rows of a workload, "
        "mostly system time. Zyra's own API runs commands in its server process, without "
        "that cost and without any isolation; this service gives every run a process of "
        "its own.",
        "The last two rows of a workload run as Zyra does by default, numpy's OpenBLAS "
        "with a thread per core that spins after each call. The service's template "
        "process runs it with one thread, keeps its heap in huge pages and malloc's freed "
        "memory mapped: its command process uses less CPU than the plain fork, and its "
        "forks cost less than a fork of a heap in 4 KiB pages would.",
        "While a core is idle (1 client, not 8), the spare maps 8 MiB of heap and copies "
        "the ~6,000 template pages commands write to (runner/lean_template.py, "
        "runner/written_pages.py) before its request comes: its CPU and faults are in "
        "the command process's row, but off the request's path. The command itself then "
        "takes a few hundred faults instead of thousands.",
    ]
    return [table, first_runs(runs, workloads, tmp)]


def _throughput_bound(name: str, found: dict[str, Level]) -> str:
    """What the runs/s goal at 8 clients asks of this service's CPU per run."""
    ours, theirs = found["service 8"], found["zyra 8"]
    cores = len(os.sched_getaffinity(0))
    most = cores * 1000 / (1.2 * theirs.runs_per_s)
    return (
        f"{name}, 8 clients: this service keeps {ours.cores:.2f} of {cores} cores busy at "
        f"{ours.cpu_ms:.1f} ms of CPU a run ({ours.runs_per_s:.1f} runs/s); Zyra's API "
        f"{theirs.cores:.2f} cores at {theirs.cpu_ms:.1f} ms ({theirs.runs_per_s:.1f} "
        f"runs/s: its commands run in threads of one Python process, where one thread at "
        f"a time runs Python code). 1.2 times its runs/s on {cores} cores leaves at most "
        f"{most:.1f} ms of CPU a run, all processes together, with every core busy."
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probe"]:
        print(json.dumps(in_one_process(int(sys.argv[2]), json.loads(sys.argv[3]))))
        raise SystemExit(0)
    if sys.argv[1:2] == ["--template-probe"]:
        runs, argvs = json.loads(sys.argv[2]), json.loads(sys.argv[3])
        sys.argv = sys.argv[:1]  # what Zyra's modules may read at import
        print(json.dumps(in_a_template(runs, argvs)))
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    for t in measure(parser.parse_args().quick):
        print(t.markdown())
