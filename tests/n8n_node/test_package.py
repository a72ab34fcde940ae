"""The n8n community node package (n8n-nodes-zyra/): it installs, builds, lints and passes
its own unit tests with n8n's node tooling.

Its node_modules is installed once per package-lock.json (`npm ci` in
~/.cache/zyra-orchestrator/n8n-node-modules/<sha256 of the lock>/) and the package's own
`node_modules` is a symlink to it: a warm run installs nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "n8n-nodes-zyra"
CACHE_ROOT = Path.home() / ".cache" / "zyra-orchestrator" / "n8n-node-modules"
COMPLETE = ".complete"
INSTALL_TIMEOUT_S = 900
STEP_TIMEOUT_S = 300
# The tools print spinners and colours for terminals; plain text reads better in a failure.
QUIET_ENV = {
    "CI": "true",
    "NO_COLOR": "1",
    "FORCE_COLOR": "0",
    "npm_config_update_notifier": "false",
}

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT_S + 4 * STEP_TIMEOUT_S)


def npm_command(*args: str) -> list[str]:
    npm = shutil.which("npm")
    assert npm is not None, "npm (Node.js 20.19+) is needed to build the n8n node package"
    nice = shutil.which("nice")
    # Low priority: the machine builds other things at the same time.
    return [*([nice, "-n", "10"] if nice else []), npm, *args]


def run_npm(
    *args: str, cwd: Path, timeout: int = STEP_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        npm_command(*args),
        cwd=cwd,
        env={**os.environ, **QUIET_ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def tail(result: subprocess.CompletedProcess[str], lines: int = 60) -> str:
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stdout + result.stderr)
    return "\n".join(text.splitlines()[-lines:])


def install(target: Path) -> None:
    """`npm ci` of the package's manifests into target/, made visible only once complete."""
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for manifest in ("package.json", "package-lock.json"):
        shutil.copy2(PACKAGE / manifest, staging / manifest)
    # --ignore-scripts: no dependency needs a build step, and the one install script in the
    # tree (eslint-plugin-n8n-nodes-base's `npx only-allow pnpm`) fails where npx may not
    # download (npm's `yes=false`).
    result = run_npm(
        "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline",
        cwd=staging, timeout=INSTALL_TIMEOUT_S,
    )  # fmt: skip
    (staging / "install.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.fail(f"npm ci failed (exit {result.returncode}):\n{tail(result)}")
    (staging / COMPLETE).write_text("ok\n")
    staging.rename(target)


def link_node_modules(modules: Path) -> None:
    link = PACKAGE / "node_modules"
    if link.is_symlink():
        if link.resolve() == modules.resolve():
            return
        link.unlink()
    elif link.exists():
        shutil.rmtree(link)  # a node_modules installed by hand: npm ci would replace it too
    link.symlink_to(modules, target_is_directory=True)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    digest = hashlib.sha256((PACKAGE / "package-lock.json").read_bytes()).hexdigest()
    target = CACHE_ROOT / digest
    if not (target / COMPLETE).is_file():
        CACHE_ROOT.mkdir(parents=True, exist_ok=True)
        with (CACHE_ROOT / f"{digest}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be installing the same lock
            if not (target / COMPLETE).is_file():
                shutil.rmtree(target, ignore_errors=True)
                install(target)
    modules = target / "node_modules"
    link_node_modules(modules)
    return modules


@pytest.fixture(scope="module")
def build(node_modules: Path) -> subprocess.CompletedProcess[str]:
    return run_npm("run", "build", cwd=PACKAGE)


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
