"""The shell scripts this project's dev set-up runs are shellcheck-clean.

Needs `shellcheck` (Debian package `shellcheck`; .ci/run installs it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Every shell script in the repository: CI's entry point, the dev scripts and the
# tool builders (a new script is checked without being listed).
SCRIPTS = [
    ".ci/run",
    *sorted(
        str(path.relative_to(REPO))
        for pattern in ("scripts/*.sh", "tools/**/*.sh", "charts/**/*.sh")
        for path in REPO.glob(pattern)
    ),
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck_clean(script: str) -> None:
    binary = shutil.which("shellcheck")
    if binary is None:
        pytest.fail(
            "shellcheck is not installed (Debian package `shellcheck`; .ci/run installs it)"
        )
    result = subprocess.run(
        [binary, "--severity=style", "--external-sources", script],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
