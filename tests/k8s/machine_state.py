"""What a test cluster could leave behind on the machine, captured so two can be compared.

Only the machine's own (initial) namespaces are looked at: the test process's mount table,
network interfaces, addresses, routes and iptables rules, the machine-wide sysctls the
kubelet writes, the top of every cgroup hierarchy, and the host paths a node would write
to if its private /run and /var overlay were missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path

SYSCTLS = (
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
)  # fmt: skip
# Globs: containerd names a pod's network namespace /run/netns/cni-<uuid>.
NODE_PATHS = (
    "/var/lib/kubelet", "/var/lib/cni", "/var/lib/containerd", "/var/log/pods",
    "/var/log/containers", "/run/containerd", "/run/netns/cni-*", "/run/xtables.lock",
    "/opt/containerd", "/etc/cni/net.d",
)  # fmt: skip
CGROUP_FS = Path("/sys/fs/cgroup")
CLUSTER_CGROUP_PREFIX = "zyra-k8s-"
# Other tools on the same machine change these meanwhile (image builds with podman or
# buildah, `ip netns add` by other tests); nothing of the test cluster is named like them
# (its pod network namespaces would be /run/netns/cni-*).
FOREIGN = re.compile(
    r"containers/storage|/podman/|podman\d|cni-podman|NETAVARK|libpod|buildah|docker"
    r"|/run/netns(?!/cni-)"
)


def _run(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        return f"({argv[0]} not installed)"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


def _mounts() -> tuple[str, ...]:
    # mount point, fs type and source; mount IDs are left out (they are not state).
    rows = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        point, fstype, source = left.split()[4], *right.split()[:2]
        rows.append(f"{point} {fstype} {source}")
    return tuple(sorted(rows))


def _iptables(tool: str) -> str:
    # Without the "# Generated/Completed" timestamps and packet counters.
    text = _run(tool)
    lines = [re.sub(r"\[\d+:\d+\]", "", line) for line in text.splitlines()]
    return "\n".join(line for line in lines if not line.startswith("#"))


def _links() -> str:
    # Interface names, flags and addresses, not the byte counters `ip -s` would add.
    return "\n".join(
        re.sub(r"\s+", " ", line.split("\\")[0]) for line in _run("ip", "-o", "link").splitlines()
    )


def _cgroup_tops(ignore_other_clusters_than: str | None) -> tuple[str, ...]:
    """Top-level cgroups of every hierarchy (other test clusters' roots left out, so a
    cluster that is running meanwhile does not count)."""
    tops = []
    for hierarchy in sorted(CGROUP_FS.iterdir()):
        for child in sorted(hierarchy.iterdir()) if hierarchy.is_dir() else ():
            if not child.is_dir():
                continue
            if (
                child.name.startswith(CLUSTER_CGROUP_PREFIX)
                and ignore_other_clusters_than is not None
                and child.name != ignore_other_clusters_than.lstrip("/")
            ):
                continue
            tops.append(f"{hierarchy.name}/{child.name}")
    return tuple(tops)


@dataclass(frozen=True)
class MachineState:
    mounts: tuple[str, ...]
    links: str
    addresses: str
    routes: str
    iptables: str
    ip6tables: str
    sysctls: tuple[str, ...]
    cgroups: tuple[str, ...]
    node_paths: tuple[str, ...]

    @classmethod
    def capture(cls, cluster_cgroup_root: str | None = None) -> MachineState:
        return cls(
            mounts=_mounts(),
            links=_links(),
            addresses=_run("ip", "-o", "addr"),
            routes=_run("ip", "route", "show", "table", "all"),
            iptables=_iptables("iptables-save"),
            ip6tables=_iptables("ip6tables-save"),
            sysctls=tuple(f"{s}={Path('/proc/sys', s).read_text().strip()}" for s in SYSCTLS),
            cgroups=_cgroup_tops(cluster_cgroup_root),
            node_paths=tuple(str(p) for pattern in NODE_PATHS for p in Path("/").glob(pattern[1:])),
        )

    def differences(self, after: MachineState) -> list[str]:
        """One readable entry per field that changed: what appeared, what went away."""
        changed = []
        for field in fields(self):
            old, new = getattr(self, field.name), getattr(after, field.name)
            if old == new:
                continue
            if isinstance(old, str):
                old, new = tuple(old.splitlines()), tuple(new.splitlines())
            gone = [item for item in old if item not in new and not FOREIGN.search(item)]
            added = [item for item in new if item not in old and not FOREIGN.search(item)]
            if not gone and not added:
                continue
            changed.append(f"{field.name}: added {added}, gone {gone}")
        return changed
