"""The project's container images (tools/images/build.py) for any test folder that asks
for the `image_tarballs` fixture: tests/conftest.py imports this hook and fixture."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.services import REPO

IMAGE_TARBALLS = pytest.StashKey[dict[str, Path]]()
BUILD_SECONDS = pytest.StashKey[float]()


def build_images(names: list[str] | None = None) -> dict[str, Path]:
    """name: tarball of every image, or of just `names` (`build.py --only`: the other
    images' inputs, e.g. tests/ for the dev image, do not matter then); built now when
    an input changed (cold: ~10 min for all), else found in the cache (seconds)."""
    only = ["--only", *names] if names else []
    built = subprocess.run(
        [sys.executable, str(REPO / "tools" / "images" / "build.py"), *only],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    if built.returncode != 0:
        raise RuntimeError(f"tools/images/build.py failed:\n{built.stderr[-6000:]}")
    lines = [line.split("=", 1) for line in built.stdout.splitlines() if "=" in line]
    return {name: Path(path) for name, path in lines}


def pytest_collection_finish(session: pytest.Session) -> None:
    # Build here, outside any test: a cold build would otherwise count against the
    # per-test pytest-timeout of the first test that needs an image. After every
    # collection hook (-k/-m deselection): only for tests that will run.
    config = session.config
    if config.option.collectonly or IMAGE_TARBALLS in config.stash:
        return
    if not any("image_tarballs" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    started = time.monotonic()
    config.stash[IMAGE_TARBALLS] = build_images()
    config.stash[BUILD_SECONDS] = time.monotonic() - started


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    seconds = terminalreporter.config.stash.get(BUILD_SECONDS, None)
    if seconds is not None:
        terminalreporter.write_line(f"images: tools/images/build.py took {seconds:.1f}s")


@pytest.fixture(scope="session")
def image_tarballs(pytestconfig: pytest.Config) -> dict[str, Path]:
    found = pytestconfig.stash.get(IMAGE_TARBALLS, None)
    return found if found is not None else build_images()
