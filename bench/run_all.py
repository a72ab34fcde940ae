"""`make bench`: every table of docs/benchmarks.md, measured in one run on one machine.

Each bench module (bench/<name>.py, `measure(quick) -> list[Table]`) is imported by
name and run in turn; each table is printed as soon as it is measured, and all of
them are written to docs/benchmarks.md with the machine and versions. A module that
is not there is skipped (said so); one that fails is named in the file and the run
exits 1 once the others have been measured.

    .venv/bin/python bench/run_all.py [--quick] [--output PATH]
    make bench [BENCH_ARGS=--quick]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.tables import REPO, Table, machine

# In the order of issue 14's tables: (1) sync runs against Zyra's own API, and where
# a sync run's CPU goes, (2) async start, (3) event latency, (4) GET /jobs/{id}
# requests/s, (5) transfers.
MODULES = ("sync_compare", "sync_cpu", "async_start", "event_latency", "jobs_get_rps",
           "transfer")  # fmt: skip
OUTPUT = REPO / "docs" / "benchmarks.md"


def document(tables: list[Table], missing: list[str], quick: bool) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Figures measured side by side in one run, on the machine below, by `make bench`",
        "(`bench/run_all.py`; `make bench BENCH_ARGS=--quick` for a shorter, rougher run).",
        "This file is its output: do not edit it by hand, run it again.",
        "Each table's script also runs alone and prints its table:",
        "`.venv/bin/python bench/<name>.py [--quick]`. Under each table: how it was measured.",
        "",
        *(f"- {line}" for line in machine()),
        f"- Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        + (", with `--quick` (fewer runs: rough figures)" if quick else ""),
        "",
    ]
    if missing:
        lines += [*(f"Not measured in this run: {m}" for m in missing), ""]
    return "\n".join(lines) + "\n" + "\n".join(t.markdown() for t in tables)


def main(quick: bool, output: Path) -> int:
    tables: list[Table] = []
    missing: list[str] = []  # modules not there, or failed: named in the file
    failed = False
    for name in MODULES:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"bench.{name}":
                raise  # the module is there, something it imports is not
            print(f"bench/{name}.py is not there: skipped", flush=True)
            missing.append(f"bench/{name}.py is not there.")
            continue
        print(f"== bench/{name}.py{' --quick' if quick else ''}", flush=True)
        started = time.monotonic()
        try:
            measured: list[Table] = module.measure(quick)
        except Exception as exc:  # the other tables are still worth having
            traceback.print_exc()
            first_line = next(iter(str(exc).splitlines()), "")[:200]
            missing.append(f"bench/{name}.py failed: {type(exc).__name__}: {first_line}")
            failed = True
            continue
        for table in measured:
            print(table.markdown(), flush=True)
        print(f"(bench/{name}.py: {time.monotonic() - started:.0f} s)", flush=True)
        tables += measured
    output.write_text(document(tables, missing, quick))
    print(f"wrote {output}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs: rough figures, fast")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: %(default)s")
    args = parser.parse_args()
    sys.exit(main(args.quick, args.output))
