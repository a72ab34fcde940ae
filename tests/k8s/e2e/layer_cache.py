"""Unpacked image layers kept between test sessions, so that a warm `ctr import` of a
big image only ingests its blobs and skips unpacking them (about half of its time).

containerd's unpack looks for each layer's snapshot by its chain ID first and applies
the layer only when it is missing. Before an import, every layer this cache holds is
made a committed snapshot of that name in the node's containerd (layer_snapshots/, a
small Go client of containerd's snapshot API), its files hard links into the cache (the
cache and the cluster's folder are on one filesystem): seconds for a 1 GB image. After
a cold import, the layers unpacked by containerd are linked into the cache the other way
round.

Sound because nothing writes into a committed snapshot's files: overlayfs only reads
its lower layers (a container's writes go to its own upper directory), and containerd
removes a snapshot by unlinking. Keyed by chain ID (the layer and all below it), an
entry cannot be used for another layer. An entry is complete once its `complete`
marker exists; a lock keeps concurrent sessions from filling the same entry twice.
Entries unused for KEEP_DAYS go.

    ~/.cache/zyra-orchestrator/node-layers/overlayfs/<chain id hex>/{fs/,complete}
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

CACHE = Path.home() / ".cache" / "zyra-orchestrator" / "node-layers" / "overlayfs"
HELPER_SOURCE = Path(__file__).with_name("layer_snapshots")
HELPER_CACHE = Path.home() / ".cache" / "zyra-orchestrator" / "layer-snapshots"
KEEP_DAYS = 14


def chain_ids(tarball: Path) -> list[str]:
    """The chain IDs of a docker-archive's layers, bottom first (OCI image spec:
    ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)))."""
    with tarfile.open(tarball) as tar:
        manifest = json.load(_member(tar, "manifest.json"))
        config = json.load(_member(tar, manifest[0]["Config"]))
    chains: list[str] = []
    for diff_id in config["rootfs"]["diff_ids"]:
        if chains:
            diff_id = "sha256:" + hashlib.sha256(f"{chains[-1]} {diff_id}".encode()).hexdigest()
        chains.append(diff_id)
    return chains


def _member(tar: tarfile.TarFile, name: str):  # type: ignore[no-untyped-def]
    found = tar.extractfile(name)
    if found is None:
        raise ValueError(f"{tar.name}: no {name}")
    return found


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@functools.cache
def helper() -> str:
    """layer_snapshots/ built with Go (seconds; cached by the hash of its source). ctr
    cannot do its job: each ctr command's objects live under a lease that ends with it."""
    files = sorted(p for p in HELPER_SOURCE.iterdir() if p.name in ("main.go", "go.mod", "go.sum"))
    key = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()
    binary = HELPER_CACHE / key[:16] / "layer-snapshots"
    if binary.exists():
        return str(binary)
    HELPER_CACHE.mkdir(parents=True, exist_ok=True)
    with (HELPER_CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            partial = binary.with_name("layer-snapshots.partial")
            partial.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["nice", "-n", "10", "go", "build", "-o", str(partial), "."],
                           cwd=HELPER_SOURCE, check=True, capture_output=True,
                           timeout=900)  # fmt: skip
            partial.rename(binary)
            for old in HELPER_CACHE.iterdir():
                if old.is_dir() and old != binary.parent:
                    shutil.rmtree(old, ignore_errors=True)
    return str(binary)


def _helper(socket: Path, *args: str) -> list[str]:
    done = subprocess.run([helper(), str(socket), *args], capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"layer-snapshots {args[0]}: {done.stderr.strip()}")
    return done.stdout.split()


def seed(socket: Path, chains: list[str]) -> int:
    """Make each cached layer of `chains` a committed snapshot of the containerd at
    `socket`, bottom up, stopping at the first one not cached. Returns how many layers
    came from the cache."""
    if not chains:
        return 0
    with _locked():
        [made] = _helper(socket, "seed", str(CACHE), *chains)
        for chain in chains:
            entry = CACHE / chain.removeprefix("sha256:")
            if (entry / "complete").exists():
                os.utime(entry)  # last used
    return int(made)


def keep(socket: Path, chains: list[str]) -> int:
    """Link every layer of `chains` the cache lacks into it, from the snapshots an
    import unpacked. Returns how many were added; entries unused for KEEP_DAYS go."""
    if not chains:
        return 0
    added = 0
    with _locked():
        missing = [
            c for c in chains if not (CACHE / c.removeprefix("sha256:") / "complete").exists()
        ]
        if missing:
            dirs = _helper(socket, "dirs", chains[-1])[::-1]  # bottom first, as chains
            if len(dirs) != len(chains):
                raise RuntimeError(f"{len(chains)} layers but {len(dirs)} directories: {dirs}")
            for chain, files in zip(chains, dirs, strict=True):
                if chain not in missing:
                    continue
                entry = CACHE / chain.removeprefix("sha256:")
                shutil.rmtree(entry, ignore_errors=True)  # a fill cut short
                (entry / "fs").mkdir(parents=True)
                subprocess.run(["cp", "-a", "--link", f"{files}/.", str(entry / "fs")],
                               check=True, capture_output=True, timeout=600)  # fmt: skip
                (entry / "complete").touch()
                added += 1
        _forget_unused()
    return added


def _forget_unused() -> None:
    cutoff = time.time() - KEEP_DAYS * 86400
    for entry in CACHE.iterdir():
        if entry.is_dir() and entry.stat().st_mtime < cutoff:
            shutil.rmtree(entry, ignore_errors=True)
