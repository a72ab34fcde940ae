"""Parsers built once in the template give what `zyra.cli.main` gives: the same
stdout, stderr, exit code and output bytes, for every group the service exposes, its
aliases, deprecated names, help, usage errors and real commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.zyra

MAP_FLAGS = ["--no-coastline", "--no-borders", "--no-gridlines"]

# Each way runs in a fresh interpreter (main sets environment variables and logging).
RUN = """
import json, sys
from runner.child import run_zyra
if sys.argv[1] == "prebuilt":
    from runner import zyra_parsers
    assert zyra_parsers.prebuild() == []
else:
    import runner.zyra_parsers as zp
    zp._parsers.clear()
sys.exit(run_zyra(json.loads(sys.argv[2])))
"""


def zyra(way: str, argv: list[str], cwd: Path) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-c", RUN, way, json.dumps(argv)],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "MPLBACKEND": "Agg",
             "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["visualize", "heatmap", "--help"],
        ["render", "heatmap", "--help"],
        ["visualize", "heatmap", "--no-such-flag"],
        ["visualize", "no-such-command"],
        ["acquire", "http", "--help"],
        ["import", "http", "--help"],
        ["process", "convert-format", "--help"],
        ["disseminate", "local", "--help"],
        ["export", "local", "--help"],
        ["decimate", "local", "--help"],
        ["transform", "--help"],
        ["run", "--help"],
        ["--version"],
        [],
    ],
    ids=lambda argv: " ".join(argv) or "nothing",
)
def test_help_and_usage_errors_are_zyras_own(argv: list[str], tmp_path: Path) -> None:
    assert zyra("prebuilt", argv, tmp_path) == zyra("main", argv, tmp_path)


@pytest.mark.parametrize("verbosity", [[], ["-v"], ["--quiet"]], ids=["default", "-v", "--quiet"])
def test_a_real_heatmap_is_byte_identical_with_the_same_output(
    verbosity: list[str], tmp_path: Path
) -> None:
    np.save(tmp_path / "field.npy", np.random.default_rng(1).random((12, 24)))
    results = {}
    for way in ("prebuilt", "main"):
        argv = [*verbosity, "visualize", "heatmap", "--input", "field.npy",
                "--output", f"{way}.png", *MAP_FLAGS]  # fmt: skip
        code, out, err = zyra(way, argv, tmp_path)
        assert code == 0, err
        results[way] = (out.replace(way, "<out>"), err.replace(way, "<out>"))
    assert results["prebuilt"] == results["main"]
    assert "INFO: <out>.png" in results["prebuilt"][1]  # what Zyra logs, at every verbosity
    assert (tmp_path / "prebuilt.png").read_bytes() == (tmp_path / "main.png").read_bytes()


def test_a_deprecated_name_warns_from_zyras_own_line(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("hello\n")
    argv = ["decimate", "local", "--input", "in.txt", "out.txt"]
    prebuilt = zyra("prebuilt", argv, tmp_path)
    assert prebuilt == zyra("main", argv, tmp_path)
    assert "zyra/cli.py" in prebuilt[2] and "'decimate' is deprecated" in prebuilt[2]
