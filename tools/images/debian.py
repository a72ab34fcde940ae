"""Debian bookworm root filesystems from Debian's mirror (mmdebstrap, minbase), as tarballs
`podman import` takes: the start of every image tools/images makes without a registry.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO

SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# What debian:bookworm-slim leaves out of every package (its dpkg.cfg.d file); kept in
# the image, so a later `apt-get install` (RUNTIME_APT_PACKAGES) leaves them out too.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/locale/*",
)
# The machine's own name and resolver would be baked in otherwise; a container
# runtime mounts its own.
FORGET_HOST = 'rm -f "$1/etc/resolv.conf" "$1/etc/hostname"'
# The same config in every image (a run that finds an image environment-less gets
# no PATH from containerd).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def recipe() -> dict[str, object]:
    """What every root filesystem here is made from (part of each image's hash)."""
    return {"suite": SUITE, "mirrors": MIRRORS, "variant": "minbase", "dpkg": DPKG_OPTIONS}


def rootfs_tarball(out: Path, packages: Sequence[str], hooks: Sequence[str], log: IO[str]) -> None:
    """mmdebstrap a minbase root filesystem with `packages`, run each customize hook
    (a shell command, "$1" the root folder), and write it to `out` (atomically)."""
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    argv = [
        "nice", "-n", "10", "mmdebstrap", "--mode=root", "--format=tar", "--variant=minbase",
        "--aptopt=Acquire::Retries \"3\"",
        *(f"--dpkgopt={option}" for option in DPKG_OPTIONS),
        *([f"--include={','.join(packages)}"] if packages else []),
        *(f"--customize-hook={hook}" for hook in [*hooks, FORGET_HOST]),
        SUITE, str(partial), *MIRRORS,
    ]  # fmt: skip
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=True)
    partial.rename(out)
