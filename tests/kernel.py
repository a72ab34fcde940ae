"""The running kernel, for tests of what only some kernels offer."""

from __future__ import annotations

import os


def kernel_at_least(major: int, minor: int) -> bool:
    release = tuple(int(p) for p in os.uname().release.split(".")[:2])
    return release >= (major, minor)
