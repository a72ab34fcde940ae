"""A node agent that plays kubelet (and scheduler) for the test control plane.

Real Kubernetes does everything around it: the Job controller creates and deletes pods,
the API server validates every write, authorises the agent as a node (Node authorizer +
NodeRestriction) and proxies `pods/log` to the agent's HTTPS endpoint. What the agent fakes
is the container runtime: each pod's first container runs as a local process group.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from tests.k8s.cluster import ControlPlane
from tests.k8s.log_server import start_log_server
from tests.k8s.pod_process import SMP, Container, Pod, now, raw_json
from tests.services import free_port

log = logging.getLogger(__name__)


class NodeAgent:
    """Registers a Node, binds pending pods to it and runs them as local processes."""

    def __init__(
        self,
        control_plane: ControlPlane,
        folder: Path,
        name: str = "zyra-node",
        unpullable: str = "does-not-exist",
    ) -> None:
        self.control_plane, self.folder, self.name = control_plane, folder, name
        self.unpullable = unpullable  # images containing this string never "pull"
        self.port = free_port()
        self.client_creds, self.serving = control_plane.node_credentials(name)
        # The kubelet part uses the node identity (system:node:<name>): the API server's Node
        # authorizer and NodeRestriction admission then check it like a real kubelet.
        self.core = client.CoreV1Api(control_plane.api_client(self.client_creds))
        self.leases = client.CoordinationV1Api(control_plane.api_client(self.client_creds))
        # Binding pods is the scheduler's job: done as system:kube-scheduler.
        self.scheduler = client.CoreV1Api(control_plane.api_client(control_plane.scheduler))
        self.stopping = threading.Event()
        self.containers: dict[str, Container] = {}  # by pod UID
        self.finished: dict[tuple[str, str], Container] = {}  # logs outlive the process
        self.started: set[str] = set()  # pod UIDs
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._watches: list[watch.Watch] = []
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ start/stop
    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._server, thread = start_log_server(self)
        self._threads.append(thread)
        self._register()
        loops: list[tuple[str, Callable[[], None]]] = [
            ("scheduler", self._scheduler_loop),
            ("kubelet", self._kubelet_loop),
            ("heartbeat", self._heartbeat_loop),
        ]
        for name, target in loops:
            thread = threading.Thread(target=target, name=f"node-agent-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for w in list(self._watches):
            w.stop()
        with self._lock:
            containers = list(self.containers.values())
        for container in containers:
            container.kill()
        for container in containers:
            container.done.wait(10)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=35)

    def forget(self, container: Container) -> None:
        with self._lock:
            if self.containers.get(container.uid) is container:
                del self.containers[container.uid]

    def deletenow(self, namespace: str, name: str, uid: str) -> None:
        """Finish a graceful deletion: grace 0, guarded by UID against a same-named successor."""
        body = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
        )
        try:
            self.core.delete_namespaced_pod(name, namespace, body=body, _preload_content=False)
        except client.ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def find(self, namespace: str, pod: str) -> Container | None:
        with self._lock:
            live = [
                c for c in self.containers.values() if (c.namespace, c.name) == (namespace, pod)
            ]
            return live[-1] if live else self.finished.get((namespace, pod))

    # ------------------------------------------------------------------ node
    def _node_status(self) -> dict[str, Any]:
        stamp = now()
        resources = {"cpu": str(os.cpu_count() or 1), "memory": "8Gi", "pods": "110"}
        info = {
            "machineID": uuid.uuid4().hex, "systemUUID": str(uuid.uuid4()),
            "bootID": str(uuid.uuid4()), "kernelVersion": platform.release(),
            "osImage": "zyra node agent", "containerRuntimeVersion": "zyra://local-process",
            "kubeletVersion": "v1.33.13", "kubeProxyVersion": "", "operatingSystem": "linux",
            "architecture": "amd64",
        }  # fmt: skip
        return {"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "node agent is posting ready status",
                            "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "capacity": resources, "allocatable": resources, "nodeInfo": info,
        }}  # fmt: skip

    def _register(self) -> None:
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64"}  # fmt: skip
        node = client.V1Node.from_dict({"metadata": {"name": self.name, "labels": labels}})
        try:
            self.core.create_node(node, _preload_content=False)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        self.core.patch_node_status(
            self.name, self._node_status(), _content_type=SMP, _preload_content=False
        )
        self._renew_lease()

    def _renew_lease(self) -> None:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": now}
        try:
            self.leases.patch_namespaced_lease(
                self.name, "kube-node-lease", {"spec": spec}, _content_type=SMP,
                _preload_content=False,
            )  # fmt: skip
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            lease = client.V1Lease.from_dict({"metadata": {"name": self.name}, "spec": spec})
            self.leases.create_namespaced_lease("kube-node-lease", lease, _preload_content=False)

    def _heartbeat_loop(self) -> None:
        # Keeps the node-lifecycle controller from marking the node NotReady and evicting pods.
        while not self.stopping.wait(10):
            try:
                self._renew_lease()
                self.core.patch_node_status(
                    self.name, self._node_status(), _content_type=SMP, _preload_content=False
                )
            except Exception:
                log.exception("node heartbeat failed")

    # ------------------------------------------------------------------ watches
    def _watch(
        self,
        list_pods: Callable[..., Any],
        selector: str,
        handle: Callable[[str, Pod], None],
        resync: Callable[[list[Pod]], None] | None = None,
    ) -> None:
        """List, then watch from that resourceVersion; relist after each short watch."""
        while not self.stopping.is_set():
            try:
                listed = raw_json(list_pods(field_selector=selector, _preload_content=False))
                for pod in listed["items"]:
                    handle("ADDED", pod)
                if resync is not None:
                    resync(listed["items"])
                w = watch.Watch()
                self._watches.append(w)
                try:
                    for event in self._events(w, list_pods, selector, listed):
                        handle(event["type"], event["object"])
                finally:
                    self._watches.remove(w)
            except Exception:
                if not self.stopping.is_set():
                    log.exception("pod watch failed; relisting")
                    time.sleep(0.5)

    def _events(
        self, w: watch.Watch, list_pods: Callable[..., Any], selector: str, listed: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        rv = listed["metadata"]["resourceVersion"]
        for event in w.stream(
            list_pods, field_selector=selector, resource_version=rv, timeout_seconds=30,
            deserialize=False,
        ):  # fmt: skip
            if self.stopping.is_set():
                return
            if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                yield event

    def _scheduler_loop(self) -> None:
        selector = "spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed"
        self._watch(self.scheduler.list_pod_for_all_namespaces, selector, self._bind)

    def _bind(self, kind: str, pod: Pod) -> None:
        meta = pod["metadata"]
        if kind == "DELETED" or meta.get("deletionTimestamp") or pod["spec"].get("nodeName"):
            return
        binding = client.V1Binding.from_dict({
            "metadata": {"name": meta["name"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.name},
        })  # fmt: skip
        try:
            # _preload_content=False: the client cannot deserialise the Status it gets back.
            self.scheduler.create_namespaced_pod_binding(
                meta["name"], meta["namespace"], binding, _preload_content=False
            )
        except client.ApiException as exc:
            if exc.status not in (404, 409):  # gone, or already bound
                log.warning("binding %s/%s failed: %s", meta["namespace"], meta["name"], exc)

    def _kubelet_loop(self) -> None:
        self._watch(
            self.core.list_pod_for_all_namespaces, f"spec.nodeName={self.name}",
            self._sync, resync=self._resync,
        )  # fmt: skip

    def _resync(self, pods: list[Pod]) -> None:
        # Pods deleted while no watch was open never send DELETED: reap them here.
        alive = {pod["metadata"]["uid"] for pod in pods}
        with self._lock:
            vanished = [c for uid, c in self.containers.items() if uid not in alive]
        for container in vanished:
            container.request_deletion(0, gone=True)

    def _sync(self, kind: str, pod: Pod) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        uid = meta["uid"]
        with self._lock:
            container = self.containers.get(uid)
        if kind == "DELETED":
            if container is not None:
                container.request_deletion(0, gone=True)
            return
        if container is None:
            # A pod runs at most once: events queued before our terminal status must not
            # restart it.
            if uid in self.started or status.get("phase") in ("Succeeded", "Failed"):
                if meta.get("deletionTimestamp"):
                    self.deletenow(meta["namespace"], meta["name"], uid)
                return
            container = Container(self, pod)
            with self._lock:
                if self.stopping.is_set() or uid in self.started:
                    return
                self.started.add(uid)
                self.containers[uid] = container
                self.finished[(container.namespace, container.name)] = container
            threading.Thread(target=container.run, name=f"pod-{meta['name']}", daemon=True).start()
        if meta.get("deletionTimestamp"):
            container.request_deletion(int(meta.get("deletionGracePeriodSeconds") or 0))
