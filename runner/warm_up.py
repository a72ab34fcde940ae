"""What the template process runs once before it forks anything: one small command of
each kind users run most, on inputs made here, so that what Zyra and its libraries load
on first use is in memory before the fork instead of loaded again in every child.

Measured in a child forked after each warm-up, against one forked before it: a GRIB2 →
NetCDF conversion takes ~50 ms instead of 520 to 710 ms (eccodes reads its definitions on
first use, cfgrib and xarray build their backends); a CSV time series ~200 ms instead
of ~290 (pandas' parsers, matplotlib's date handling); a heatmap loads fonts and
colormaps. Outputs are discarded; a warm-up that fails only costs speed, and is named
in the template's hello.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from runner.child import run_zyra
from runner.samples import write_grib2, write_series

MAP_FLAGS = ["--no-coastline", "--no-borders", "--no-gridlines"]


def _heatmap(folder: Path) -> list[str]:
    import numpy as np

    np.save(folder / "warm.npy", np.zeros((4, 4)))
    return ["visualize", "heatmap", "--input", str(folder / "warm.npy"), "--output",
            str(folder / "warm.png"), "--width", "64", "--height", "32", *MAP_FLAGS]  # fmt: skip


def _grib2_to_netcdf(folder: Path) -> list[str]:
    write_grib2(folder / "warm.grib2")
    return ["process", "convert-format", str(folder / "warm.grib2"), "netcdf",
            "--output", str(folder / "warm.nc")]  # fmt: skip


def _time_series(folder: Path) -> list[str]:
    write_series(folder / "warm.csv")
    return ["visualize", "timeseries", "--input", str(folder / "warm.csv"), "--x", "time",
            "--y", "value", "--output", str(folder / "warm-series.png")]  # fmt: skip


WARM_UPS: dict[str, Callable[[Path], list[str]]] = {
    "heatmap": _heatmap,
    "GRIB2 to NetCDF": _grib2_to_netcdf,
    "time series": _time_series,
}


def warm_up() -> list[str]:
    """Run each warm-up; those that did not end with exit 0, and why."""
    failed = []
    with tempfile.TemporaryDirectory() as tmp, _quiet(), _inside(Path(tmp)):
        for name, make in WARM_UPS.items():
            try:
                code = run_zyra(make(Path(tmp)))
            except Exception as exc:
                failed.append(f"warm-up {name}: {type(exc).__name__}: {exc}")
                continue
            if code != 0:
                failed.append(f"warm-up {name}: exit {code}")
    return failed


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """stdout and stderr (the descriptors: C libraries print too) to /dev/null."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    """Whatever a command writes beside its inputs or as a temporary file (Zyra leaves
    its copy of a GRIB2 behind) lands in the warm-up's folder, removed after it."""
    before, temp = os.getcwd(), tempfile.tempdir
    os.chdir(folder)
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        os.chdir(before)
        tempfile.tempdir = temp
