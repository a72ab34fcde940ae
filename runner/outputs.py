"""What a command produced: files in its working directory and binary stdout."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from pydantic import BaseModel

HASH_CHUNK = 1 << 20
# Leading bytes → the file extension a user would expect for binary stdout.
_MAGIC_SUFFIXES = (
    (b"\x89HDF\r\n\x1a\n", ".nc"),
    (b"CDF\x01", ".nc"),
    (b"CDF\x02", ".nc"),
    (b"GRIB", ".grib2"),
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF8", ".gif"),
    (b"PK\x03\x04", ".zip"),
    (b"%PDF", ".pdf"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)


class OutputFile(BaseModel):
    name: str  # path relative to the job's results, '/'-separated
    size: int
    sha256: str
    source: str = "workdir"  # "workdir" or "stdout"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_text(path: Path, probe_bytes: int = 1 << 16) -> bool:
    """Whether a captured stream reads as UTF-8 text (checked on its head)."""
    with path.open("rb") as f:
        head = f.read(probe_bytes)
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the probe's end is still text.
        return exc.start >= len(head) - 3 and len(head) == probe_bytes
    return True


def stdout_suffix(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(16)
    return next((suffix for magic, suffix in _MAGIC_SUFFIXES if head.startswith(magic)), ".bin")


def collect_outputs(
    workdir: Path, results_dir: Path, exclude: frozenset[str] = frozenset()
) -> list[OutputFile]:
    """Move every regular file the command left in workdir into results_dir.

    `exclude` names workdir-relative paths that are not outputs (staged inputs).
    Symlinks are not followed: a command cannot publish files from elsewhere.
    """
    outputs = []
    for path in sorted(workdir.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        name = path.relative_to(workdir).as_posix()
        if name in exclude:
            continue
        target = results_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
        outputs.append(OutputFile(name=name, size=target.stat().st_size, sha256=sha256_of(target)))
    return outputs


def keep_binary_stdout(stdout_path: Path, results_dir: Path) -> OutputFile:
    """Store binary stdout as an output named stdout.<ext> (by its magic bytes)."""
    name = "stdout" + stdout_suffix(stdout_path)
    target = results_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(stdout_path, target)
    return OutputFile(
        name=name, size=target.stat().st_size, sha256=sha256_of(target), source="stdout"
    )
