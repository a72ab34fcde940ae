"""A build cache for replayed Dockerfile stages, with Docker's rule: a RUN whose inputs
are unchanged (everything before it in the stage chain, the bytes its COPYs brought in,
its own command and environment) is not run again; its result is put back.

A result is the replay's build outputs (the rootfs and the absolute build-arg folders
such as the venv) right after the RUN, kept as hard links (a 1 GB venv is kept or put
back in a second or two, not copied). Nothing may write into a kept file in place: pip
unlinks before it writes and Python writes bytecode by rename, and each snapshot keeps a
manifest of sizes and modification times that is checked before use, so a snapshot
that was changed anyway is thrown away and the RUN runs again.

Absolute paths are baked into what a RUN makes (a venv's scripts name its python), so
the outputs are put back at the paths they were made at: the key includes them, and
replays that use the cache build in one fixed folder per Dockerfile (`work_folder`),
held under a lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("ZYRA_TOOLS_CACHE", Path.home() / ".cache" / "zyra-orchestrator"))
COMPLETE = "complete.json"  # written last: a snapshot without it is unfinished
UNUSED_FOR_S = 7 * 24 * 3600  # snapshots neither kept nor used for a week are removed


def tree_digest(path: Path) -> str:
    """What a COPY of `path` brings in: relative names, modes and bytes."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        rel = "." if file == path else file.relative_to(path).as_posix()
        digest.update(f"{rel}\0{file.stat().st_mode & 0o777:o}\0".encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _manifest(folder: Path) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for top, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(top, name)
            info = os.lstat(path)
            found[os.path.relpath(path, folder)] = [info.st_size, info.st_mtime_ns]
    return found


def _link_copy(source: Path, dest: Path) -> None:
    """`dest` becomes a copy of `source` whose files are hard links to its files."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(source), str(dest)], check=True)


@dataclass
class LayerCache:
    root: Path = CACHE_ROOT / "dockerfile-layers"
    # A snapshot costs a second or two: only RUNs slower than this are worth keeping.
    min_seconds: float = 10.0

    def _folder(self, family: str, key: str) -> Path:
        return self.root / f"{family}-{key[:24]}"

    def restore(self, family: str, key: str, outputs: list[Path]) -> bool:
        """Put the outputs of a kept RUN back in place; False when there is none (or it
        was changed since it was kept, and is now gone)."""
        folder = self._folder(family, key)
        try:
            kept = json.loads((folder / COMPLETE).read_text())
        except (OSError, ValueError):
            return False
        if kept["outputs"] != [str(p) for p in outputs] or any(
            _manifest(folder / str(i)) != manifest for i, manifest in enumerate(kept["manifests"])
        ):
            shutil.rmtree(folder, ignore_errors=True)
            return False
        for i, output in enumerate(outputs):
            _link_copy(folder / str(i), output)
        (folder / COMPLETE).touch()  # used: not stale
        return True

    def keep(self, family: str, key: str, outputs: list[Path]) -> None:
        """Keep the outputs of a RUN just done; older snapshots of `family` (one RUN of
        one Dockerfile) go, and so do snapshots nobody used for a week."""
        for old in self.root.glob("*"):
            complete = old / COMPLETE
            # An unfinished one may be another run's, still being kept: an hour's grace.
            limit = UNUSED_FOR_S if complete.exists() else 3600
            try:
                age = time.time() - (complete if complete.exists() else old).stat().st_mtime
            except OSError:
                continue
            if old.name.startswith(f"{family}-") or age > limit:
                shutil.rmtree(old, ignore_errors=True)
        folder = self._folder(family, key)
        manifests = []
        for i, output in enumerate(outputs):
            target = folder / str(i)
            if output.exists():
                _link_copy(output, target)
            else:
                target.mkdir(parents=True)
            manifests.append(_manifest(target))
        (folder / COMPLETE).write_text(
            json.dumps({"outputs": [str(p) for p in outputs], "manifests": manifests})
        )


@contextmanager
def work_folder(name: str, root: Path = CACHE_ROOT / "dockerfile-replays") -> Iterator[Path]:
    """A fixed, emptied folder to replay `name` in, held by this process until the end."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run on this machine waits its turn
        folder = root / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
