"""What every bench prints: tables of figures, and the machine they were measured on.

`make bench` (bench/run_all.py) prints each table and writes them all to
docs/benchmarks.md; each bench script also runs alone and prints its own.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how it was measured, what it means

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        widths = [
            max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
            for i, c in enumerate(self.columns)
        ]

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        out = [f"### {self.title}", "", line(self.columns)]
        out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        out += [line(r) for r in self.rows]
        if self.notes:
            out += ["", *(f"- {n}" for n in self.notes)]
        return "\n".join(out) + "\n"


def ms(seconds: list[float]) -> str:
    """p50 / p95 in milliseconds."""
    values = sorted(s * 1000 for s in seconds)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return f"{statistics.median(values):.0f} / {p95:.0f}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def machine() -> list[str]:
    """The machine and versions, for the top of docs/benchmarks.md."""
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor() or "unknown",
    )  # fmt: skip
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return [
        f"CPU: {cpu}, {os.cpu_count()} cores; memory {memory_kb / 2**20:.0f} GiB",
        f"Kernel {platform.release()}; Python {platform.python_version()}",
        f"zyra {metadata.version('zyra')}; zyra-orchestrator at {commit or 'unknown'}",
    ]
