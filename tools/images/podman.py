"""Podman as tools/images runs it: a containers.conf, storage and run root of its own, so
nothing in /etc/containers changes and pruning never touches anybody else's images.

The settings this machine needs (docs: /work/shared/notes/real-node.md): runc, since
crun fails on hybrid cgroups; ulimits no higher than the machine's hard limits (root
lacks CAP_SYS_RESOURCE, so podman's defaults cannot be set); cgroupfs and a file event
log, as there is no systemd. CONTAINERS_CONF replaces every containers.conf podman
would read, CONTAINERS_STORAGE_CONF every storage.conf.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO

CACHE_ROOT = Path(os.environ.get("ZYRA_TOOLS_CACHE", Path.home() / ".cache" / "zyra-orchestrator"))
HOME = CACHE_ROOT / "podman"
# Run state (locks, mounts): under /run, as podman's own default is.
RUN_ROOT = Path("/run/zyra-orchestrator")

CONTAINERS_CONF = f"""\
# Written by tools/images/podman.py; used through CONTAINERS_CONF.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{RUN_ROOT}/libpod"
"""

STORAGE_CONF = f"""\
# Written by tools/images/podman.py; used through CONTAINERS_STORAGE_CONF.
[storage]
driver = "overlay"
graphroot = "{HOME}/storage"
runroot = "{RUN_ROOT}/podman"
"""


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def environment() -> dict[str, str]:
    """os.environ plus what points podman at this module's configuration."""
    _write_if_changed(HOME / "containers.conf", CONTAINERS_CONF)
    _write_if_changed(HOME / "storage.conf", STORAGE_CONF)
    tmp = HOME / "tmp"  # build contexts, image staging, cache mounts: not /var/tmp
    tmp.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "CONTAINERS_CONF": str(HOME / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(HOME / "storage.conf"),
        "TMPDIR": str(tmp),
    }


def command(*args: str) -> list[str]:
    return ["podman", *args]


def run(
    *args: str,
    log: IO[str] | None = None,
    nice: bool = False,
    check: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run podman; its output goes to `log` when given, else it is captured."""
    argv = (["nice", "-n", "10"] if nice else []) + command(*args)
    if log is not None:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        return subprocess.run(
            argv,
            env=environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            check=check,
            timeout=timeout,
        )
    return subprocess.run(
        argv, env=environment(), capture_output=True, text=True, check=check, timeout=timeout
    )


def image_exists(ref: str) -> bool:
    return run("image", "exists", ref, check=False).returncode == 0


def image_inspect(ref: str) -> dict[str, object]:
    found: list[dict[str, object]] = json.loads(run("image", "inspect", ref).stdout)
    return found[0]


def load(tarball: Path, log: IO[str] | None = None) -> None:
    run("load", "--input", str(tarball), log=log)


def save(ref: str, tarball: Path, log: IO[str] | None = None) -> None:
    """A docker-archive (what `ctr images import` and `docker load` take), written
    next to its final name and renamed: a reader never sees half of one."""
    partial = tarball.with_name(tarball.name + ".partial")
    partial.unlink(missing_ok=True)
    run("save", "--format", "docker-archive", "--output", str(partial), ref, log=log)
    partial.rename(tarball)


def tagged_images() -> dict[str, str]:
    """Every tag in this storage, and the image id it names."""
    out = run("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    found = {}
    for line in out.splitlines():
        name, _, image_id = line.partition(" ")
        if not name.startswith("<none>"):
            found[name] = image_id
    return found


def prune(keep: Sequence[str], log: IO[str] | None = None) -> list[str]:
    """Untag everything but `keep`, then remove what no kept image needs (untagged
    images and their layers, and stopped containers a failed run left). Returns
    the tags removed."""
    removed = [name for name in tagged_images() if name not in keep]
    for name in removed:
        # `untag IMAGE NAME`: only that name (without NAME, every name of the image goes).
        run("untag", name, name, log=log, check=False)
    run("container", "prune", "--force", log=log, check=False)
    # An image's untagged parent becomes dangling once its child goes: repeat.
    for _ in range(20):
        out = run("image", "prune", "--force", check=False).stdout.split()
        if log is not None and out:
            log.write(f"pruned images: {' '.join(out)}\n")
        if not out:
            break
    return removed
