"""What every test cluster shares: the pinned Kubernetes binaries, the Job path's
controllers, client identities and kubeconfig files (tests/k8s/real_cluster.py runs them)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.services import REPO

# Controllers the Job path needs; `*` would add ~40 more loops for no benefit on 2 cores.
CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "ttl-after-finished-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "namespace-controller",
    "node-lifecycle-controller",
    "pod-garbage-collector-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
)


def k8s_binaries() -> dict[str, str]:
    """Paths of the pinned binaries, built (cold, ~15 min) or restored from the cache."""
    built = subprocess.run(
        ["bash", str(REPO / "tools" / "k8s" / "build-binaries.sh")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = [line.split("=", 1) for line in built.stdout.splitlines() if "=" in line]
    return {name: path for name, path in lines}


@dataclass(frozen=True)
class Credentials:
    """A client identity: a cert/key pair signed by the cluster CA."""

    cert: Path
    key: Path


def _write_kubeconfig(path: Path, server: str, ca: Path, creds: Credentials, user: str) -> None:
    # JSON is valid YAML, and avoids needing a YAML writer.

    path.write_text(
        json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "zyra-test",
            "clusters": [{"name": "zyra-test",
                          "cluster": {"server": server, "certificate-authority": str(ca)}}],
            "users": [{"name": user, "user": {"client-certificate": str(creds.cert),
                                              "client-key": str(creds.key)}}],
            "contexts": [{"name": "zyra-test", "context": {"cluster": "zyra-test", "user": user}}],
        }, indent=1)
    )  # fmt: skip
