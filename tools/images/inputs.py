"""What goes into an image, as one hash: an unchanged hash means the cached tarball is
that image, and any changed input (a byte of a COPYed file, a build arg, the base)
means another hash, so a rebuild.

A Dockerfile's build context is what `git ls-files` lists (tracked files, and untracked
ones .gitignore does not hide) that .dockerignore lets through. The build is given a
copy of exactly those files, so nothing the hash did not see (a stray ignored file in
the work tree) can reach an image; of them, an image's hash covers the ones its
Dockerfile target COPYs (tools/images/dockerfile.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


def digest(*parts: object) -> str:
    """A hash of JSON-able parts (keys sorted, so dict order does not matter)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def tree_stat_digest(root: Path, skip: tuple[str, ...] = ()) -> str:
    """Names, sizes, modes and modification times under `root` (not contents: a
    750 MB tree is stat-ed in well under a second). Top-level-relative paths that
    start with one of `skip` are left out."""
    h = hashlib.sha256()
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            if rel.startswith(skip):
                continue
            info = os.lstat(path)
            h.update(f"{rel}\0{info.st_size}\0{info.st_mode:o}\0{info.st_mtime_ns}\n".encode())
    return h.hexdigest()


# --- .dockerignore ------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match, plus `**`) as a regex over a path."""
    out, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif ch in "[]^-":
            out += ch  # character classes pass through, as in Go
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out)


@dataclass(frozen=True)
class DockerIgnore:
    """Docker's rules: the last pattern that matches a path (or one of its parent
    folders) decides; `!` lets it back in."""

    rules: tuple[tuple[bool, re.Pattern[str]], ...]  # (let back in, regex)

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        rules = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            back_in = line.startswith("!")
            cleaned = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            rules.append((back_in, _pattern_regex(cleaned)))
        return cls(tuple(rules))

    def excluded(self, path: str) -> bool:
        parts = path.split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        excluded = False
        for back_in, regex in self.rules:
            if any(regex.fullmatch(c) for c in candidates):
                excluded = not back_in
        return excluded


def context_files(repo: Path) -> list[str]:
    """The build context of the repository's Dockerfiles: relative paths, sorted."""
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    ignore_file = repo / ".dockerignore"
    ignore = DockerIgnore.parse(ignore_file.read_text() if ignore_file.exists() else "")
    files = set()
    for rel in filter(None, listed.split("\0")):
        path = repo / rel
        # Listed but deleted in the work tree (not staged yet): not in a build either.
        if path.is_file() and not path.is_symlink() and not ignore.excluded(rel):
            files.add(rel)
    return sorted(files)


def stage_context(repo: Path, dest: Path) -> dict[str, str]:
    """Copy the build context to `dest` (emptied first). Returns what each copied file
    is, by relative path: its permission bits and the hash of its bytes (COPY keeps
    both)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    manifest = {}
    for rel in context_files(repo):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, target)
        manifest[rel] = f"{os.stat(target).st_mode & 0o7777:o}:{file_digest(target)}"
    return manifest
