from __future__ import annotations

import pytest

from runner import progress


@pytest.mark.parametrize(
    ("line", "fraction"),
    [
        ("[job build] step 1/4: process convert-format", 0.0),
        ("[job build] step 3/4: visualize heatmap", 0.5),
        ("Downloading 45%", 0.45),
        ("frames 12.5 % done", 0.125),
        ("INFO: out.nc", None),
        ("ratio 250% of normal", None),
        ("step 5/4", None),
    ],
)
def test_command_fraction(line: str, fraction: float | None) -> None:
    assert progress.command_fraction(line) == fraction


def test_command_fraction_maps_into_the_running_phase() -> None:
    assert progress.overall(0.0) == progress.RUNNING
    assert progress.overall(1.0) == progress.COMMAND_DONE
    assert progress.RUNNING < progress.overall(0.5) < progress.COMMAND_DONE
