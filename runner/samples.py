"""Tiny inputs for real Zyra commands, made offline: for the template process's warm-up
(runner/warm_up.py) and for the tests."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def write_grib2(path: Path, ni: int = 8, nj: int = 4) -> np.ndarray:
    """A GRIB2 field built from an eccodes sample; returns the values written."""
    # Imported here: the template process imports this module before it may load numpy
    # (runner/lean_template.py).
    import eccodes
    import numpy as np

    values = np.linspace(250.0, 300.0, ni * nj)
    handle = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
    try:
        for key, value in {
            "Ni": ni,
            "Nj": nj,
            "latitudeOfFirstGridPointInDegrees": 60.0,
            "longitudeOfFirstGridPointInDegrees": 0.0,
            "latitudeOfLastGridPointInDegrees": 30.0,
            "longitudeOfLastGridPointInDegrees": 70.0,
            "iDirectionIncrementInDegrees": 10.0,
            "jDirectionIncrementInDegrees": 10.0,
            "discipline": 0,
            "parameterCategory": 0,
            "parameterNumber": 0,
            "typeOfFirstFixedSurface": 103,
            "scaledValueOfFirstFixedSurface": 2,
        }.items():
            eccodes.codes_set(handle, key, value)
        eccodes.codes_set_values(handle, values)
        with path.open("wb") as f:
            eccodes.codes_write(handle, f)
    finally:
        eccodes.codes_release(handle)
    return values


def write_series(path: Path, rows: int = 10) -> None:
    """A CSV time series: a `time` column of days and a `value` column."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["time", "value"])
        for day in range(1, rows + 1):
            writer.writerow([f"2024-01-{day:02d}", day * day])
