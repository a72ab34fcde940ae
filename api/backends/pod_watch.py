"""Follows every runner pod of this service and reports each runner's start and end.

One watcher per API process follows the runner pods by label, from a LIST and then a
WATCH at its resourceVersion; on 410 Gone it lists again, on any other error it
reconnects with backoff. What it reads off a pod:
- the container running → the job is `running`;
- the container terminated → its exit code and reason (Completed, Error,
  Signaled for 128+N, OOMKilled; DeadlineExceeded when the Job controller ended it);
- the container stuck waiting on an image (ImagePullBackOff, ErrImagePull,
  CreateContainerConfigError, …) longer than allowed → the Job is deleted and
  the job fails with that reason;
- the pod gone before it terminated → the Job's own status decides
  (DeadlineExceeded), else the runner was lost.
Reports are idempotent: the job service finalises with a compare-and-set, so
the initial LIST after a restart (or a second replica) repeats nothing.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from api.backends.base import RunnerExit, RunnerReports
from api.backends.job_manifest import MANAGED_BY, job_name
from api.backends.pod_logs import PodLogRelay
from api.observability import metrics
from runner.lifecycle import ExitReason

log = logging.getLogger("zyra.kubernetes")

PULL_FAILURES = frozenset(
    {ExitReason.IMAGE_PULL_BACK_OFF, ExitReason.ERR_IMAGE_PULL, ExitReason.INVALID_IMAGE_NAME,
     ExitReason.CREATE_CONTAINER_CONFIG_ERROR, ExitReason.CREATE_CONTAINER_ERROR,
     ExitReason.ERR_IMAGE_NEVER_PULL}
)  # fmt: skip
SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"


class PodWatcher:
    def __init__(
        self,
        core: client.CoreV1Api,
        batch: client.BatchV1Api,
        namespace: str,
        reports: RunnerReports,
        *,
        pull_failure_timeout_s: float = 120.0,
        watch_timeout_s: int = 30,
        logs: PodLogRelay | None = None,
    ) -> None:
        self.core, self.batch, self.namespace = core, batch, namespace
        self.reports = reports
        self.pull_failure_timeout_s = pull_failure_timeout_s
        self.watch_timeout_s = watch_timeout_s
        self.logs = logs  # None: a silent runner's pod log is not relayed
        self._stuck: dict[str, tuple[float, ExitReason]] = {}  # job id → (since, waiting reason)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch_forever, daemon=True)

    def start(self) -> None:
        metrics.watch_started()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch_forever(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                pods = self.core.list_namespaced_pod(self.namespace, label_selector=SELECTOR)
                metrics.watch_listed()
                for pod in pods.items:
                    self.observe(pod, deleted=False)
                self.expire_stuck()
                self._follow(pods.metadata.resource_version)
                delay = 1.0
            except ApiException as exc:
                metrics.watch_restarted("expired" if exc.status == 410 else "error")
                if exc.status != 410:  # 410 Gone: our resourceVersion is too old; list again
                    log.warning("pod watch failed: %s", exc.reason)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
            except Exception as exc:  # the API server restarting, a dropped connection
                metrics.watch_restarted("interrupted")
                log.warning("pod watch interrupted: %s", exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _follow(self, resource_version: str) -> None:
        stream = watch.Watch()
        for event in stream.stream(
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=SELECTOR,
            resource_version=resource_version,
            # Short enough that a stuck image is noticed on time even when no event comes.
            timeout_seconds=min(
                self.watch_timeout_s, max(1, math.ceil(self.pull_failure_timeout_s))
            ),
        ):
            if self._stop.is_set():
                stream.stop()
                return
            if event["type"] == "ERROR":
                raise ApiException(status=event["raw_object"].get("code", 500))
            self.observe(event["object"], deleted=event["type"] == "DELETED")
            self.expire_stuck()

    def observe(self, pod: Any, deleted: bool) -> None:
        """Report what one state of a runner pod says of its job."""
        job_id = (pod.metadata.labels or {}).get("zyra.job-id")
        if not job_id:
            return
        statuses = (pod.status and pod.status.container_statuses) or []
        state = statuses[0].state if statuses else None
        if state is not None and state.running is not None:
            self._stuck.pop(job_id, None)
            self.reports.on_runner_started(job_id, self._handle(pod))
            if self.logs is not None:
                self.logs.follow_if_silent(job_id, pod.metadata.name)
        elif state is not None and state.terminated is not None:
            self._stuck.pop(job_id, None)
            self._ended(job_id)
            self.reports.on_runner_exit(job_id, self._terminated(job_id, pod, state.terminated))
        elif (
            state is not None
            and state.waiting is not None
            and state.waiting.reason in PULL_FAILURES
            and job_id not in self._stuck
        ):
            self._stuck[job_id] = (time.monotonic(), ExitReason(state.waiting.reason))
        if deleted and not (state is not None and state.terminated is not None):
            self._stuck.pop(job_id, None)
            self._ended(job_id)
            self.reports.on_runner_exit(job_id, self.vanished(job_id))

    def _ended(self, job_id: str) -> None:
        if self.logs is not None:
            self.logs.ended(job_id)

    def expire_stuck(self) -> None:
        """Fail jobs whose container has waited on its image for too long."""
        now = time.monotonic()
        for job_id, (since, reason) in list(self._stuck.items()):
            if now - since < self.pull_failure_timeout_s:
                continue
            self._stuck.pop(job_id, None)
            try:
                self.batch.delete_namespaced_job(
                    job_name(job_id), self.namespace, propagation_policy="Background"
                )
            except ApiException as exc:
                if exc.status != 404:
                    log.warning("could not delete stuck job %s: %s", job_id, exc.reason)
            self.reports.on_runner_exit(job_id, RunnerExit(None, reason, overrides_result=True))

    def vanished(self, job_id: str) -> RunnerExit:
        """The pod is gone without a terminated state: the Job's status decides; the
        runner's stored result, if any, gives the exit code."""
        if self._job_failure(job_id) == ExitReason.DEADLINE_EXCEEDED:
            return RunnerExit(None, ExitReason.DEADLINE_EXCEEDED, overrides_result=True)
        return RunnerExit(None, ExitReason.LOST)

    def _terminated(self, job_id: str, pod: Any, terminated: Any) -> RunnerExit:
        # Killed because the Job's deadline passed, not by its own doing.
        deleted = pod.metadata.deletion_timestamp is not None
        if deleted and self._job_failure(job_id) == ExitReason.DEADLINE_EXCEEDED:
            return RunnerExit(
                terminated.exit_code, ExitReason.DEADLINE_EXCEEDED, overrides_result=True
            )
        reason = container_reason(terminated.reason, terminated.exit_code)
        return RunnerExit(
            terminated.exit_code, reason, overrides_result=reason is ExitReason.OOM_KILLED
        )

    def _job_failure(self, job_id: str) -> str | None:
        """The Job controller's reason for failing the Job, if it did."""
        try:
            job = self.batch.read_namespaced_job(job_name(job_id), self.namespace)
        except ApiException:
            return None
        for condition in (job.status and job.status.conditions) or []:
            if condition.type in ("Failed", "FailureTarget") and condition.status == "True":
                return condition.reason
        return None

    def _handle(self, pod: Any) -> dict[str, Any]:
        return {
            "kind": "kubernetes",
            "namespace": pod.metadata.namespace,
            "job": job_name(pod.metadata.labels["zyra.job-id"]),
            "pod": pod.metadata.name,
        }


def container_reason(kubelet_reason: str | None, exit_code: int) -> ExitReason:
    """A terminated runner container's reason in our words: the kubelet's own others
    (StartError, ContainerStatusUnknown, ...) say no more than the exit code."""
    if kubelet_reason == ExitReason.OOM_KILLED:
        return ExitReason.OOM_KILLED
    # A runner killed by a signal (128+N) is Signaled, as a command would be.
    return ExitReason.of_exit_code(exit_code)
