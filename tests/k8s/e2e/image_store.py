"""The release's images on the session cluster's node: built (or found in the cache) by
tools/images/build.py, then `ctr import`ed, each timed. Their unpacked layers are kept
between sessions (layer_cache.py); ZYRA_E2E_LAYER_CACHE=0 imports without it."""

from __future__ import annotations

import os
import time

from tests.k8s.e2e import layer_cache
from tests.k8s.real_cluster import RealCluster
from tests.project_images import build_images


def import_images(cluster: RealCluster, names: list[str]) -> dict[str, float]:
    """Build and import each image; {"<step> <name>": seconds}."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    tarballs = build_images(names)
    timings["images built or found"] = round(time.monotonic() - started, 1)
    use_cache = os.environ.get("ZYRA_E2E_LAYER_CACHE", "1") != "0"
    socket = cluster.containerd_socket
    for name in names:
        started = time.monotonic()
        chains = layer_cache.chain_ids(tarballs[name]) if use_cache else []
        seeded = layer_cache.seed(socket, chains) if use_cache else 0
        imported = cluster.import_image(tarballs[name])
        added = layer_cache.keep(socket, chains) if use_cache else 0
        took = round(time.monotonic() - started, 1)
        what = f"{seeded} of {len(chains)} layers from the cache" if use_cache else "no cache"
        timings[f"import {name} ({what}, ctr import {imported:.1f}s, +{added} kept)"] = took
    return timings
