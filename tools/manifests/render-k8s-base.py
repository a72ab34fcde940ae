#!/usr/bin/env python3
"""Write k8s/base (plain manifests for `kubectl apply -k`) from the Helm chart's defaults.

    python tools/manifests/render-k8s-base.py           # rewrite k8s/base
    python tools/manifests/render-k8s-base.py --check   # exit 1 if k8s/base is stale

The chart is the one source: edit it, then re-run this. What differs from `helm
install` with default values: no Secrets (plain manifests cannot generate
credentials; k8s/README.md lists the three to create, the dev overlay generates dev
ones), no `helm test` hook, no Helm-only labels or checksum annotations.
Needs PyYAML and helm (tools/helm/get-helm.sh fetches it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "zyra-orchestrator"
BASE = REPO / "k8s" / "base"
RELEASE = NAMESPACE = "zyra-orchestrator"
HEADER = (
    "# Generated from charts/zyra-orchestrator (default values) by\n"
    "# tools/manifests/render-k8s-base.py; edit the chart and re-run it.\n"
)
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
HELM_ONLY_ANNOTATIONS = ("checksum/config", "checksum/secrets")


def helm_binary() -> str:
    done = subprocess.run(["bash", str(REPO / "tools" / "helm" / "get-helm.sh")],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout.strip().splitlines()[-1].split("=", 1)[1]


def chart_resources() -> list[dict[str, Any]]:
    done = subprocess.run(
        [helm_binary(), "template", RELEASE, str(CHART), "-n", NAMESPACE, "--skip-tests"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc and doc["kind"] != "Secret"]


def _strip(meta: dict[str, Any]) -> None:
    for key in HELM_ONLY_LABELS:
        meta.get("labels", {}).pop(key, None)
    annotations = meta.get("annotations", {})
    for key in HELM_ONLY_ANNOTATIONS:
        annotations.pop(key, None)
    if "annotations" in meta and not annotations:
        del meta["annotations"]


def plain(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without what only Helm uses."""
    _strip(resource["metadata"])
    template = resource.get("spec", {}).get("template")
    if template:
        _strip(template["metadata"])
    return resource


def file_name(resource: dict[str, Any]) -> str:
    suffix = resource["metadata"]["name"].removeprefix(RELEASE).strip("-") or "api"
    return f"{resource['kind'].lower()}-{suffix}.yaml"


def render(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    names = []
    for resource in chart_resources():
        name = file_name(resource)
        names.append(name)
        body = yaml.safe_dump(plain(resource), sort_keys=False, width=100)
        (target / name).write_text(HEADER + body)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": sorted(names),
    }
    (target / "kustomization.yaml").write_text(
        HEADER
        + "# Secrets are not here: create them first (k8s/README.md), or use overlays/dev.\n"
        + yaml.safe_dump(kustomization, sort_keys=False)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    if not args.check:
        for old in BASE.glob("*.yaml"):
            old.unlink()
        render(BASE)
        print(f"wrote {len(list(BASE.glob('*.yaml')))} files to {BASE.relative_to(REPO)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        render(fresh)
        want = {p.name: p.read_text() for p in fresh.glob("*.yaml")}
        have = {p.name: p.read_text() for p in BASE.glob("*.yaml")}
    stale = sorted(n for n in want.keys() | have.keys() if want.get(n) != have.get(n))
    if stale:
        print(f"k8s/base is stale ({', '.join(stale)}): run {Path(__file__).relative_to(REPO)}",
              file=sys.stderr)  # fmt: skip
        return 1
    print("k8s/base matches the chart")
    return 0


if __name__ == "__main__":
    sys.exit(main())
