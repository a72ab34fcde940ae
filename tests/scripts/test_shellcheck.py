"""The shell scripts this project's dev set-up runs are shellcheck-clean.

Needs `shellcheck` (Debian package `shellcheck`; .ci/run installs it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ["scripts/start-api.sh", "tools/schemas/fetch-schemas.sh"]


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
