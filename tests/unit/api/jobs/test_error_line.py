"""The line a failed run's one-line `detail` quotes from its stderr."""

from __future__ import annotations

import pytest

from api.jobs.error_line import MAX_CHARS, error_line

COLORMAP = (
    "ERROR: 'no-such-colormap' is not a valid value for cmap.\n"
    "See `matplotlib.bivar_colormaps()` and `matplotlib.multivar_colormaps()` for "
    "bivariate and multivariate colormaps\n"
)


@pytest.mark.parametrize(
    ("stderr", "line"),
    [
        (COLORMAP, "ERROR: 'no-such-colormap' is not a valid value for cmap."),
        (
            "INFO: reading\nERROR:root:Input not found: x.grib2\n",
            "ERROR:root:Input not found: x.grib2",
        ),
        (
            'Traceback (most recent call last):\n  File "x.py", line 1\n'
            "eccodes.CodesInternalError: End of resource reached\nWARNING: cleaning up\n",
            "eccodes.CodesInternalError: End of resource reached",
        ),
        (
            "usage: zyra visualize heatmap [-h] ...\n"
            "zyra visualize heatmap: error: argument --cmap: expected one argument\n",
            "zyra visualize heatmap: error: argument --cmap: expected one argument",
        ),
        ("ERROR: first\nCRITICAL: second\n", "CRITICAL: second"),
        ("no GRIB messages found\n\n  \n", "no GRIB messages found"),
        # A shutdown message names no error of the command's.
        ("ValueError: bad input\nException ignored in: <function f>\n", "ValueError: bad input"),
        ("", ""),
        (" \n\n", ""),
    ],
)
def test_the_line_that_says_why_wins_over_the_last_line(stderr: str, line: str) -> None:
    assert error_line(stderr) == line


def test_a_long_line_is_cut() -> None:
    assert (
        error_line("ERROR: " + "x" * 2000 + "\ntrailing hint\n")
        == ("ERROR: " + "x" * 2000)[:MAX_CHARS]
    )
