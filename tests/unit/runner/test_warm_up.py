"""The template's warm-up: every command in it runs to exit 0 with this Zyra (else the
children of that kind would quietly be slow again), and it leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.zyra

CODE = """
import json, os
from runner.warm_up import warm_up
before = sorted(os.listdir("."))
failed = warm_up()
print(json.dumps({"failed": failed, "left": sorted(set(os.listdir(".")) - set(before))}))
"""


def test_every_warm_up_runs_and_leaves_nothing(tmp_path: Path) -> None:
    """In the folder it runs in and in TMPDIR (HOME may keep the libraries' caches)."""
    (tmp_path / "home").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", CODE], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "MPLBACKEND": "Agg",
             "TMPDIR": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"failed": [], "left": []}
    assert not done.stderr.strip()  # the commands' own output went nowhere
