"""What a command produced: files in its working directory and binary stdout."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

from runner.storage import RunnerStorage

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
    with path.open("rb") as f:
        return sha256_of_chunks(iter(lambda: f.read(HASH_CHUNK), b""))


def sha256_of_chunks(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def looks_binary(chunk: bytes) -> bool:
    """Whether a chunk of stdout is binary data rather than text."""
    if b"\x00" in chunk:
        return True
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(chunk) - 3  # not just a character cut at the chunk's end
    return False


def stdout_suffix(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(16)
    return next((suffix for magic, suffix in _MAGIC_SUFFIXES if head.startswith(magic)), ".bin")


def collect_outputs(
    workdir: Path, storage: RunnerStorage, prefix: str, exclude: frozenset[str] = frozenset()
) -> list[OutputFile]:
    """Store every regular file the command left in workdir under `prefix/<name>`.

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
        output = OutputFile(name=name, size=path.stat().st_size, sha256=sha256_of(path))
        storage.put_file(f"{prefix}/{name}", path)
        outputs.append(output)
    return outputs


def keep_binary_stdout(stdout_path: Path, storage: RunnerStorage, prefix: str) -> OutputFile:
    """Store binary stdout as an output named stdout.<ext> (by its magic bytes)."""
    name = "stdout" + stdout_suffix(stdout_path)
    output = OutputFile(
        name=name, size=stdout_path.stat().st_size, sha256=sha256_of(stdout_path), source="stdout"
    )
    storage.put_file(f"{prefix}/{name}", stdout_path)
    return output


def keep_outputs(
    workdir: Path,
    storage: RunnerStorage,
    prefix: str,
    staged: frozenset[str],
    stdout_path: Path,
    stdout_binary: bool,
) -> list[OutputFile]:
    """Everything a finished command produced: its files, and binary stdout."""
    outputs = collect_outputs(workdir, storage, prefix, exclude=staged)
    if stdout_binary:
        outputs.append(keep_binary_stdout(stdout_path, storage, prefix))
    return outputs
