"""The n8n community node package (n8n-nodes-zyra/): it installs, builds, lints and passes
its own unit tests with n8n's node tooling.

The install (cached per package-lock.json) and the build (once per session, shared with the
real n8n of tests/n8n) are in tests/n8n_node/package.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.n8n_node import package
from tests.n8n_node.package import INSTALL_TIMEOUT_S, PACKAGE, STEP_TIMEOUT_S, run_npm, tail

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT_S + 4 * STEP_TIMEOUT_S)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    return package.node_modules()


@pytest.fixture(scope="module")
def build(node_modules: Path) -> subprocess.CompletedProcess[str]:
    return package.build()


def test_build_emits_every_node_and_credential_the_package_names(
    build: subprocess.CompletedProcess[str],
) -> None:
    assert build.returncode == 0, tail(build)
    n8n = json.loads((PACKAGE / "package.json").read_text())["n8n"]
    named = [*n8n["credentials"], *n8n["nodes"]]
    assert named, "package.json names no node and no credential"
    missing = [path for path in named if not (PACKAGE / path).is_file()]
    assert not missing, f"not built: {missing}"
    # Static files n8n-node build copies beside the code: the icons the node refers to.
    assert (PACKAGE / "dist" / "icons" / "zyra.svg").is_file()
    assert (PACKAGE / "dist" / "nodes" / "Zyra" / "Zyra.node.json").is_file()


def test_lint_passes(node_modules: Path) -> None:
    result = run_npm("run", "lint", cwd=PACKAGE)
    assert result.returncode == 0, tail(result)


def test_unit_tests_type_check(node_modules: Path) -> None:
    result = run_npm("run", "typecheck", cwd=PACKAGE)
    assert result.returncode == 0, tail(result)


def test_unit_tests_pass(node_modules: Path) -> None:
    result = run_npm("test", cwd=PACKAGE)
    assert result.returncode == 0, tail(result)
    counts = re.search(r"Tests\s+(\d+) passed", re.sub(r"\x1b\[[0-9;]*m", "", result.stdout))
    assert counts and int(counts.group(1)) > 0, f"no unit test ran:\n{tail(result)}"
