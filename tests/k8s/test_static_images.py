"""The test node's own images come out the same whatever umask the test process has
(an in-process API leaves 077): a pod's non-root user can run their binary. Found by a
cold CI run, where the probe image was first built inside such a test."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s.static_images import static_go_image


@pytest.fixture
def strict_umask() -> Iterator[None]:
    found = os.umask(0o077)
    yield
    os.umask(found)


def test_a_cold_build_under_umask_077_makes_a_binary_everyone_may_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strict_umask: None
) -> None:
    monkeypatch.setenv("ZYRA_TOOLS_CACHE", str(tmp_path / "cache"))  # cold: nothing cached
    image = static_go_image("probe")
    assert stat.S_IMODE(image.binary.stat().st_mode) == 0o755
    assert os.umask(0o077) == 0o077  # the caller's umask is left as it was
