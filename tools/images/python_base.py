"""The stand-in for the Dockerfiles' PYTHON_IMAGE (python:3.11.x-slim-bookworm, which
cannot be pulled here): Debian bookworm minbase with the Debian libraries the official
slim image ships, and this machine's own CPython 3.11 build at /usr/local.

Why copy a CPython in rather than use Debian's: bookworm's python3 is 3.11.2 and the
project's constraints need >= 3.11.5. Why this machine's build rather than compiling
one: it is the interpreter the project's tests already run on, copying it takes
seconds where a compile takes many minutes on two cores, and nothing needs the network.

The image is kept as its root filesystem tarball (cache.Artifact "python-base") and
imported into podman's storage when a build needs it; its tag carries its hash, so a
Dockerfile built `--build-arg PYTHON_IMAGE=<tag>` names exactly this base.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tools.images import debian, podman
from tools.images.cache import Artifact
from tools.images.inputs import digest, file_digest, tree_stat_digest

PREFIX = Path(os.environ.get("ZYRA_BASE_PYTHON", "/root/.pyenv/versions/3.11.7"))
MINIMUM = (3, 11, 5)  # constraints.txt (soupsieve) needs it
REPOSITORY = "localhost/zyra-python-base"
HOOK = Path(__file__).with_name("python-base-customize.sh")
# The official slim image's run-time packages (ca-certificates, netbase, tzdata and
# the libraries its interpreter links against), and libnsl2/libtirpc3 for this
# build's nis module. What minbase lacks of debian:bookworm-slim comes in with them.
PACKAGES = (
    "ca-certificates", "netbase", "tzdata",
    "libbz2-1.0", "libexpat1", "libffi8", "libgdbm6", "liblzma5", "libncursesw6",
    "libnsl2", "libreadline8", "libsqlite3-0", "libssl3", "libtirpc3", "libuuid1", "zlib1g",
)  # fmt: skip


@dataclass(frozen=True)
class Python:
    prefix: Path
    version: str  # 3.11.7
    major_minor: str  # 3.11

    @classmethod
    def at(cls, prefix: Path) -> Python:
        out = subprocess.run(
            [str(prefix / "bin" / "python3"), "-I", "-c",
             "import json, sys; print(json.dumps(list(sys.version_info[:3])))"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        info = tuple(json.loads(out))
        if not (MINIMUM <= info < (3, 12)):
            raise SystemExit(f"{prefix}: CPython {info} is not 3.11 >= {MINIMUM}")
        return cls(prefix, ".".join(map(str, info)), f"{info[0]}.{info[1]}")

    def identity(self) -> dict[str, str]:
        """What of the build is copied into the image: the interpreter, its scripts,
        and the stdlib, headers and libraries (their names, sizes and times)."""
        bin_dir = self.prefix / "bin"
        copied = [f"python{self.major_minor}", f"python{self.major_minor}-config",
                  f"pydoc{self.major_minor}", f"idle{self.major_minor}",
                  f"2to3-{self.major_minor}"]  # fmt: skip
        return {
            "version": self.version,
            "prefix": str(self.prefix),
            **{name: file_digest(bin_dir / name) for name in copied if (bin_dir / name).exists()},
            "tree": tree_stat_digest(
                self.prefix, skip=("bin/", f"lib/python{self.major_minor}/site-packages/")
            ),
        }


@dataclass(frozen=True)
class PythonBase:
    python: Python
    input_hash: str

    @property
    def ref(self) -> str:
        return f"{REPOSITORY}:{self.python.version}-{debian.SUITE}-{self.input_hash[:12]}"

    @property
    def artifact(self) -> Artifact:
        return Artifact("python-base", self.input_hash, suffix=".rootfs.tar")


def image_config(version: str) -> list[str]:
    """The official image's config, as `podman import --change` instructions."""
    return [
        f"ENV PATH=/usr/local/bin:{debian.DEFAULT_PATH}",
        "ENV LANG=C.UTF-8",
        f"ENV PYTHON_VERSION={version}",
        'CMD ["python3"]',
    ]


def python_base(prefix: Path = PREFIX) -> PythonBase:
    """The base's identity (no build): its inputs hashed."""
    python = Python.at(prefix)
    input_hash = digest(
        "python-base",
        debian.recipe(),
        PACKAGES,
        file_digest(HOOK),
        python.identity(),
        f"{REPOSITORY}:{python.version}-{debian.SUITE}",  # the tag, but for the hash
        image_config(python.version),
    )
    return PythonBase(python, input_hash)


def make_rootfs(base: PythonBase, log: IO[str]) -> None:
    """mmdebstrap the base's root filesystem into its artifact (~45 s)."""
    hook = f'{HOOK} "$1" {base.python.prefix} {base.python.major_minor}'
    debian.rootfs_tarball(base.artifact.path, PACKAGES, [hook], log)


def import_image(base: PythonBase, log: IO[str]) -> None:
    args = ["import"]
    for change in image_config(base.python.version):
        args += ["--change", change]
    podman.run(*args, str(base.artifact.path), base.ref, log=log)
