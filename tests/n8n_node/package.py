"""The n8n community node package (n8n-nodes-zyra/): its dependencies and its build, made
once per test session and shared by the package's own tests and the real n8n that loads it.

Its node_modules is installed once per package-lock.json (`npm ci` in
~/.cache/zyra-orchestrator/n8n-node-modules/<sha256 of the lock>/) and the package's own
`node_modules` is a symlink to it: a warm run installs nothing. The build (`npm run build`,
~5-7 s) runs once per session, in place (dist/).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


class PackageBuildError(RuntimeError):
    """npm ci or the build failed; the message ends with the tool's last lines."""


def npm_command(*args: str) -> list[str]:
    npm = shutil.which("npm")
    if npm is None:
        raise PackageBuildError("npm (Node.js 20.19+) is needed to build the n8n node package")
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
        raise PackageBuildError(f"npm ci failed (exit {result.returncode}):\n{tail(result)}")
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


@contextmanager
def _locked(name: str) -> Iterator[None]:
    """An exclusive lock shared by every test run on this machine."""
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with (CACHE_ROOT / name).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@functools.cache
def node_modules() -> Path:
    """The package's dependencies, installed once per package-lock.json and linked."""
    digest = hashlib.sha256((PACKAGE / "package-lock.json").read_bytes()).hexdigest()
    target = CACHE_ROOT / digest
    if not (target / COMPLETE).is_file():
        with _locked(f"{digest}.lock"):  # another run may be installing the same lock
            if not (target / COMPLETE).is_file():
                shutil.rmtree(target, ignore_errors=True)
                install(target)
    modules = target / "node_modules"
    link_node_modules(modules)
    return modules


_BUILD_ONCE = threading.Lock()  # tests/n8n builds in a background thread


def build() -> subprocess.CompletedProcess[str]:
    """`npm run build` (n8n-node build: empties dist/, then tsc and the icons), once per
    session. The caller judges the result (the package's own test asserts on it)."""
    with _BUILD_ONCE:
        return _build()


@functools.cache
def _build() -> subprocess.CompletedProcess[str]:
    node_modules()
    with _locked("build.lock"):
        return run_npm("run", "build", cwd=PACKAGE)


def built_package() -> Path:
    """The package folder with a fresh dist/; raises PackageBuildError if it did not build."""
    result = build()
    if result.returncode != 0:
        raise PackageBuildError(f"npm run build failed (exit {result.returncode}):\n"
                                f"{tail(result)}")  # fmt: skip
    return PACKAGE


def copy_built_package(destination: Path) -> Path:
    """What n8n needs of the built package (package.json and dist/), copied to
    destination/n8n-nodes-zyra: a snapshot no later build in the working tree can empty
    under a running n8n. Returns that folder."""
    package = built_package()
    folder = destination / package.name
    folder.mkdir(parents=True)
    with _locked("build.lock"):  # not while another session's build empties dist/
        shutil.copy2(package / "package.json", folder / "package.json")
        shutil.copytree(package / "dist", folder / "dist")
    return folder
