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
HEATMAP = ["visualize", "heatmap", "--input", "field.npy", "--output", "<way>.png", *MAP_FLAGS]
CASES = {
    "visualize heatmap --help": ["visualize", "heatmap", "--help"],
    "render heatmap --help": ["render", "heatmap", "--help"],
    "an unknown flag": ["visualize", "heatmap", "--no-such-flag"],
    "an unknown command": ["visualize", "no-such-command"],
    "acquire http --help": ["acquire", "http", "--help"],
    "import http --help": ["import", "http", "--help"],
    "process convert-format --help": ["process", "convert-format", "--help"],
    "disseminate local --help": ["disseminate", "local", "--help"],
    "export local --help": ["export", "local", "--help"],
    "decimate local --help": ["decimate", "local", "--help"],
    "transform --help": ["transform", "--help"],
    "run --help": ["run", "--help"],
    "--version": ["--version"],
    "nothing": [],
    "heatmap": HEATMAP,
    "heatmap -v": ["-v", *HEATMAP],
    "heatmap --quiet": ["--quiet", *HEATMAP],
    "decimate local (deprecated)": ["decimate", "local", "--input", "in.txt", "<way>.txt"],
}

# One interpreter per way, each case in a child forked from it, as the template does
# (main sets environment variables and logging: no case sees another's).
RUN_ALL = """
import json, os, sys
from runner.child import run_zyra
from runner import zyra_parsers
way, cases = sys.argv[1], json.loads(sys.argv[2])
if way == "PREBUILT":
    assert zyra_parsers.prebuild() == []
results = {}
for name, argv in cases.items():
    argv = [a.replace("<way>", way) for a in argv]
    out, err = f"{way}.out", f"{way}.err"
    pid = os.fork()
    if pid == 0:
        for fd, path in ((1, out), (2, err)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        code = run_zyra(argv)
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    text = [open(p).read().replace(way, "<way>") for p in (out, err)]
    results[name] = [os.waitstatus_to_exitcode(status), *text]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Path]:
    """Each case run both ways: {case: [exit code, stdout, stderr]} per way."""
    folder = tmp_path_factory.mktemp("zyra-parsers")
    np.save(folder / "field.npy", np.random.default_rng(1).random((12, 24)))
    (folder / "in.txt").write_text("hello\n")
    found = []
    for way in ("PREBUILT", "ZYRAMAIN"):
        done = subprocess.run(
            [sys.executable, "-c", RUN_ALL, way, json.dumps(CASES)],
            cwd=folder, capture_output=True, text=True, timeout=300,
            env={"PATH": "/usr/bin:/bin", "HOME": str(folder), "MPLBACKEND": "Agg",
                 "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        found.append(json.loads(done.stdout))
    return found[0], found[1], folder


@pytest.mark.parametrize("case", CASES)
def test_the_same_answer_as_zyras_main(case: str, results: tuple[dict, dict, Path]) -> None:
    prebuilt, main, _ = results
    assert prebuilt[case] == main[case]


def test_real_commands_ran_and_wrote_the_same_bytes(results: tuple[dict, dict, Path]) -> None:
    prebuilt, _, folder = results
    for case in ("heatmap", "heatmap -v", "heatmap --quiet"):
        code, _, err = prebuilt[case]
        assert code == 0 and "INFO: <way>.png" in err, err
    assert (folder / "PREBUILT.png").read_bytes() == (folder / "ZYRAMAIN.png").read_bytes()
    assert (folder / "PREBUILT.txt").read_text() == "hello\n"


def test_usage_errors_and_help_are_what_a_zyra_user_sees(
    results: tuple[dict, dict, Path],
) -> None:
    prebuilt, _, _ = results
    code, _, err = prebuilt["an unknown flag"]
    assert code == 2 and "unrecognized arguments: --no-such-flag" in err
    code, out, _ = prebuilt["visualize heatmap --help"]
    assert code == 0 and out.startswith("usage: zyra visualize heatmap")


def test_a_deprecated_name_warns_from_zyras_own_line(results: tuple[dict, dict, Path]) -> None:
    prebuilt, _, _ = results
    code, _, err = prebuilt["decimate local (deprecated)"]
    assert code == 0 and "zyra/cli.py" in err and "'decimate' is deprecated" in err
