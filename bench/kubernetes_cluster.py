"""The Kubernetes backend on the test suite's own cluster with a real node, for benches.

The same parts the k8s tests use (tests/k8s/): a RealCluster (control plane, kubelet,
containerd, CNI, CoreDNS), the project's runner image built by tools/images/build.py
and imported into the node, a local Redis and MinIO reached by pods at the node IP, and
the API (`python -m api`, ZYRA_BACKEND=kubernetes) inside the cluster's namespaces.
Needs root and the cached node binaries (tools/k8s/*.sh, as .ci/run builds them).

A watcher in the bench process notes when each runner Job appears and when its pod's
container is seen terminated (the Kubernetes API's view, client clock): what the API
adds between submit and Job created, and between the pod's exit and the terminal event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, watch

from tests.k8s.cluster_api import ClusterApi, backend_env, start_cluster_api
from tests.k8s.real_cluster import RealCluster, node_binaries
from tests.project_images import build_images
from tests.services import RedisServer, S3Server
from tools.images.chart import ChartImages

NAMESPACE = "bench"
RUNNER_IMAGE = "zyra-orchestrator-runner"


@dataclass
class JobWatch:
    """Client-clock times, by job id, of what the Kubernetes API showed."""

    job_created: dict[str, float] = field(default_factory=dict)
    pod_terminated: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def follow(self, api_client: client.ApiClient, kind: str) -> None:
        batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
        listing = batch.list_namespaced_job if kind == "jobs" else core.list_namespaced_pod
        while not self._stop.is_set():
            for event in watch.Watch().stream(listing, NAMESPACE, timeout_seconds=2):
                now, item = time.time(), event["object"]
                job_id = (item.metadata.labels or {}).get("zyra.job-id")
                if job_id is None:
                    continue
                if kind == "jobs":
                    self.job_created.setdefault(job_id, now)
                elif any(s.state and s.state.terminated
                         for s in (item.status.container_statuses or [])):  # fmt: skip
                    self.pod_terminated.setdefault(job_id, now)

    def stop(self) -> None:
        self._stop.set()


@contextmanager
def cluster_api(tmp: Path, inputs: Path) -> Iterator[tuple[ClusterApi, JobWatch, dict]]:
    """(the API on the Kubernetes backend, the Job watch, set-up timings in seconds)."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    tarball = build_images([RUNNER_IMAGE])[RUNNER_IMAGE]
    binaries = node_binaries()
    timings["images and binaries"] = time.monotonic() - started
    cluster = RealCluster(tmp / "cluster", binaries)
    redis, s3 = RedisServer(tmp / "redis"), S3Server(tmp / "minio")
    jobs = JobWatch()
    try:
        cluster.start()
        timings["cluster start"] = cluster.timings["start total"]
        timings["runner image import"] = cluster.import_image(tarball)
        redis.start()
        s3.start()
        made = cluster.kubectl("create", "namespace", NAMESPACE)
        assert made.returncode == 0, made.stderr
        deadline = time.monotonic() + 30
        while cluster.kubectl("get", "serviceaccount", "default", "-n", NAMESPACE).returncode:
            assert time.monotonic() < deadline, "no default ServiceAccount in 30 s"
            time.sleep(0.2)
        env = backend_env(cluster, tmp, NAMESPACE, ChartImages.defaults().runner, redis, s3,
                          redis_db=0)  # fmt: skip
        server = start_cluster_api(cluster, tmp / "api", inputs, **env)
        with cluster.api_client() as api_client:
            watchers = [threading.Thread(target=jobs.follow, args=(api_client, kind),
                                         daemon=True) for kind in ("jobs", "pods")]  # fmt: skip
            for watcher in watchers:
                watcher.start()
            try:
                yield server, jobs, timings
            finally:
                jobs.stop()
                server.stop()
                for watcher in watchers:
                    watcher.join(timeout=5)
    finally:
        s3.stop()
        redis.stop()
        cluster.stop()
