"""Where tools/images keeps what it built: ~/.cache/zyra-orchestrator/images/
<name>-<input hash>.tar (one per image name: a new one replaces the old), the build
logs next to them in logs/, and a lock so two builds on this machine take turns.
"""

from __future__ import annotations

import fcntl
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tools.images.podman import CACHE_ROOT

IMAGES = CACHE_ROOT / "images"
LOGS = IMAGES / "logs"
HASH_CHARS = 16


@dataclass(frozen=True)
class Artifact:
    """A cached file made from inputs whose hash is `input_hash`."""

    name: str
    input_hash: str
    suffix: str = ".tar"

    @property
    def path(self) -> Path:
        return IMAGES / f"{self.name}-{self.input_hash[:HASH_CHARS]}{self.suffix}"

    @property
    def log(self) -> Path:
        return LOGS / f"{self.name}-{self.input_hash[:HASH_CHARS]}.log"

    def forget_others(self) -> list[Path]:
        """Remove the older artifacts (and logs) of this name; the removed paths."""
        pattern = re.compile(
            rf"{re.escape(self.name)}-[0-9a-f]{{{HASH_CHARS}}}"
            rf"({re.escape(self.suffix)}(\.partial)?|\.log)"
        )
        removed = []
        for folder in (IMAGES, LOGS):
            for path in folder.glob(f"{self.name}-*"):
                if pattern.fullmatch(path.name) and path not in (self.path, self.log):
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed


@contextmanager
def build_lock() -> Iterator[None]:
    IMAGES.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(IMAGES / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
