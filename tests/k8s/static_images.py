"""Tiny images for the test node: one static Go binary each, packed with image_tarball.

Cached under <cache>/test-images/<name>/<input hash>/ (the hash covers the Go sources,
the Go version and the packing code), so a warm call is a stat. The image reference
carries the same hash, so a changed probe can never be confused with an imported old one.

    python -m tests.k8s.static_images pause probe   # prints name=<tarball>, name-ref=<ref>
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.k8s.image_tarball import ImageConfig, write_image_tarball

REPO = Path(__file__).resolve().parents[2]
SOURCES = {
    "pause": REPO / "tools" / "k8s" / "pause",  # containerd's sandbox_image
    "probe": REPO / "tests" / "k8s" / "images" / "probe",
}


def cache_root() -> Path:
    base = os.environ.get("ZYRA_TOOLS_CACHE") or Path.home() / ".cache" / "zyra-orchestrator"
    return Path(base) / "test-images"


@dataclass(frozen=True)
class LocalImage:
    """An image tarball ready for `ctr images import`, and the static binary inside it."""

    name: str
    ref: str
    tarball: Path
    binary: Path


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("go is needed to build the test images (Go 1.24+)")
    return go


def _input_hash(source: Path, go: str) -> str:
    digest = hashlib.sha256()
    version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True)
    digest.update(version.stdout.encode())
    for packer in (Path(__file__), Path(__file__).with_name("image_tarball.py")):
        digest.update(packer.read_bytes())
    for path in sorted(source.glob("*.go")) + sorted(source.glob("go.*")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _build(source: Path, go: str, out: Path) -> None:
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-trimpath"}
    # Without a go.mod the .go files build as one command-line package (stdlib only).
    targets = ["."] if (source / "go.mod").exists() else sorted(p.name for p in source.glob("*.go"))
    subprocess.run(
        ["nice", "-n", "10", go, "build", "-ldflags=-s -w", "-o", str(out), *targets],
        cwd=source, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip


def static_go_image(name: str, source: Path | None = None) -> LocalImage:
    """Build (or take from the cache) image `zyra.local/<name>:<hash>` from `source`."""
    source = source or SOURCES[name]
    go = _go()
    key = _input_hash(source, go)
    folder = cache_root() / name / key
    image = LocalImage(name, f"zyra.local/{name}:{key}", folder / "image.tar", folder / name)
    if image.tarball.exists() and image.binary.exists():
        return image
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers may race on a cold cache
        if image.tarball.exists() and image.binary.exists():
            return image
        # The image's modes are its own, not the caller's umask: an in-process API sets
        # 077 (a binary only root could run), and a cold cache builds inside some test.
        umask = os.umask(0o022)
        try:
            _pack(name, source, go, folder, image)
        finally:
            os.umask(umask)
    return image


def _pack(name: str, source: Path, go: str, folder: Path, image: LocalImage) -> None:
    """Build the binary into a root filesystem, tar it as the image, keep the binary."""
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        rootfs = Path(scratch) / "rootfs"
        (rootfs / "tmp").mkdir(parents=True)
        (rootfs / "tmp").chmod(0o1777)
        _build(source, go, rootfs / name)
        config = ImageConfig(entrypoint=(f"/{name}",))
        write_image_tarball(rootfs, image.ref, image.tarball, config)
        shutil.copy2(rootfs / name, folder / f".{name}.tmp")
        (folder / f".{name}.tmp").replace(image.binary)


def pause_image() -> LocalImage:
    return static_go_image("pause")


def probe_image() -> LocalImage:
    return static_go_image("probe")


if __name__ == "__main__":
    for wanted in sys.argv[1:] or list(SOURCES):
        built = static_go_image(wanted)
        print(f"{wanted}-ref={built.ref}")
        print(f"{wanted}={built.tarball}")
