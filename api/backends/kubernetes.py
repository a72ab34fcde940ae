"""The Kubernetes backend: a batch/v1 Job per async run, its pod watched to its exit code.

A single watcher follows every runner pod of this service (by label), from a
LIST and then a WATCH at its resourceVersion; on 410 Gone it lists again, on
any other error it reconnects with backoff. What it reads off a pod:
- the container running → the job is `running`;
- the container terminated → its exit code and reason (Completed, Error,
  OOMKilled; DeadlineExceeded when the Job controller ended it);
- the container stuck waiting on an image (ImagePullBackOff, ErrImagePull,
  CreateContainerConfigError, …) longer than allowed → the Job is deleted and
  the job fails with that reason;
- the pod gone before it terminated → the Job's own status decides
  (DeadlineExceeded), else the runner was lost.
Reports are idempotent: the job service finalises with a compare-and-set, so
the initial LIST after a restart (or a second replica) repeats nothing.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from api.backends.base import (
    CredentialSource,
    ExitCallback,
    LaunchRefusedError,
    RunnerExit,
    StartCallback,
)
from api.backends.job_manifest import (
    MANAGED_BY,
    KubernetesJobSettings,
    RunResources,
    credentials_secret,
    credentials_secret_name,
    job_manifest,
    job_name,
)
from api.jobs.records import JobRecord
from runner.credentials import JobCredentials
from runner.events import EventLog
from runner.spec import JobSpec

log = logging.getLogger("zyra.kubernetes")

PULL_FAILURES = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError",
     "CreateContainerError", "ErrImageNeverPull"}
)  # fmt: skip
SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
PORTABLE_ENV = frozenset(
    {"LANG", "LC_ALL", "TZ", "MPLBACKEND", "PYTHONUNBUFFERED", "PYTHON_DOTENV_DISABLED"}
)


class KubernetesBackend:
    def __init__(
        self,
        settings: KubernetesJobSettings,
        api_client: client.ApiClient,
        on_start: StartCallback,
        on_exit: ExitCallback,
        pull_failure_timeout_s: float = 120.0,
        watch_timeout_s: int = 30,
        events: EventLog | None = None,
        log_fallback_after_s: float = 5.0,
        credentials: CredentialSource | None = None,
    ) -> None:
        self.settings = settings
        self.credentials = credentials
        self.dispatch_group = f"kubernetes:{settings.namespace}"  # any replica creates the Job
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.on_start, self.on_exit = on_start, on_exit
        self.pull_failure_timeout_s = pull_failure_timeout_s
        self.watch_timeout_s = watch_timeout_s
        self._stuck: dict[str, tuple[float, str]] = {}  # job id → (since, waiting reason)
        self.events, self.log_fallback_after_s = events, log_fallback_after_s
        self._following: set[str] = set()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch_forever, daemon=True)
        self._watcher.start()

    # --- Backend ------------------------------------------------------------------------

    def launch(self, record: JobRecord, spec: JobSpec) -> None:
        # Paths of the API's machine mean nothing in the pod: the runner makes its own
        # HOME and caches under its work volume.
        portable = {k: v for k, v in spec.env.items() if k in PORTABLE_ENV}
        spec = spec.model_copy(
            update={"work_root": f"{self.settings.work_mount}/{record.job_id}", "env": portable}
        )
        resources = RunResources.model_validate(record.resources) if record.resources else None
        credentials = self.credentials(spec) if self.credentials else None
        manifest = job_manifest(spec, record.stage, record.command, self.settings, resources,
                                with_credentials=credentials is not None)  # fmt: skip
        try:
            job_uid = self.batch.create_namespaced_job(
                self.settings.namespace, manifest
            ).metadata.uid
        except ApiException as exc:
            if exc.status in (400, 422):  # invalid as it is: it would be refused for ever
                raise LaunchRefusedError(f"Kubernetes refused the Job: {exc.reason}: "
                                         f"{_api_message(exc)}") from exc  # fmt: skip
            if exc.status != 409:
                raise
            # An earlier attempt created it and failed after: take it over.
            job_uid = self.batch.read_namespaced_job(
                manifest["metadata"]["name"], self.settings.namespace
            ).metadata.uid
        if credentials is not None:
            # After the Job: the Secret is owned by it. Its pod waits for the Secret (a
            # config error the kubelet retries), a matter of milliseconds.
            self._create_secret(manifest, job_uid, credentials, spec)

    def _create_secret(
        self, job: dict[str, Any], job_uid: str, credentials: JobCredentials, spec: JobSpec
    ) -> None:
        secret = credentials_secret(job, job_uid, credentials, spec)
        try:
            try:
                self.core.create_namespaced_secret(self.settings.namespace, secret)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                # Left by an earlier attempt, with credentials minted again since.
                name = secret["metadata"]["name"]
                self.core.delete_namespaced_secret(name, self.settings.namespace)
                self.core.create_namespaced_secret(self.settings.namespace, secret)
        except Exception:
            # A Job whose pod can never read its credentials must not stay.
            self.batch.delete_namespaced_job(
                job["metadata"]["name"], self.settings.namespace, propagation_policy="Background"
            )
            raise

    def cancel(self, record: JobRecord) -> None:
        """Delete the Job; its pods go with it (background propagation)."""
        try:
            self.batch.delete_namespaced_job(
                job_name(record.job_id),
                self.settings.namespace,
                propagation_policy="Background",
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
        # The pod's end (or disappearance) is reported by the watcher; a Job that
        # never got a pod has nothing to wait for.
        if not self._pods_of(record.job_id):
            self.on_exit(record.job_id, RunnerExit(None, "Cancelled"))

    def reconcile(self, active: list[JobRecord]) -> None:
        """Settle what happened while no API was watching. A Job that is gone was
        lost; a finished Job whose pods are gone (a deadline deletes them) is settled
        from its own status; the watcher's first LIST settles the rest."""
        for record in active:
            try:
                job = self.batch.read_namespaced_job(
                    job_name(record.job_id), self.settings.namespace
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self.on_exit(record.job_id, RunnerExit(None, "Lost"))
                continue
            if _finished(job) and not self._pods_of(record.job_id):
                self.on_exit(record.job_id, self._vanished(record.job_id))

    def release(self, job_id: str) -> None:
        """Delete the run's credentials Secret (else it goes with its Job, at its TTL)."""
        try:
            self.core.delete_namespaced_secret(
                credentials_secret_name(job_id), self.settings.namespace
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def runner_logs(self, job_id: str) -> str | None:
        for pod in self._pods_of(job_id):
            try:
                return self.core.read_namespaced_pod_log(
                    pod.metadata.name, self.settings.namespace, container="runner"
                )
            except ApiException as exc:
                log.warning("no log for pod %s: %s", pod.metadata.name, exc.reason)
        return None

    def close(self) -> None:
        self._stop.set()

    # --- watching -----------------------------------------------------------------------

    def _pods_of(self, job_id: str) -> list[Any]:
        return self.core.list_namespaced_pod(
            self.settings.namespace, label_selector=f"zyra.job-id={job_id}"
        ).items

    def _watch_forever(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                pods = self.core.list_namespaced_pod(
                    self.settings.namespace, label_selector=SELECTOR
                )
                for pod in pods.items:
                    self._observe(pod, deleted=False)
                self._expire_stuck()
                self._follow(pods.metadata.resource_version)
                delay = 1.0
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: our resourceVersion is too old; list again
                    log.warning("pod watch failed: %s", exc.reason)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
            except Exception as exc:  # the API server restarting, a dropped connection
                log.warning("pod watch interrupted: %s", exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _follow(self, resource_version: str) -> None:
        stream = watch.Watch()
        for event in stream.stream(
            self.core.list_namespaced_pod,
            self.settings.namespace,
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
            self._observe(event["object"], deleted=event["type"] == "DELETED")
            self._expire_stuck()

    def _observe(self, pod: Any, deleted: bool) -> None:
        job_id = (pod.metadata.labels or {}).get("zyra.job-id")
        if not job_id:
            return
        statuses = (pod.status and pod.status.container_statuses) or []
        state = statuses[0].state if statuses else None
        if state is not None and state.running is not None:
            self._stuck.pop(job_id, None)
            self.on_start(job_id, self._handle(pod))
            self._follow_logs_if_silent(job_id, pod.metadata.name)
        elif state is not None and state.terminated is not None:
            self._stuck.pop(job_id, None)
            self._following.discard(job_id)
            self.on_exit(job_id, self._terminated(job_id, pod, state.terminated))
        elif (
            state is not None
            and state.waiting is not None
            and state.waiting.reason in PULL_FAILURES
            and job_id not in self._stuck
        ):
            self._stuck[job_id] = (time.monotonic(), state.waiting.reason)
        if deleted and not (state is not None and state.terminated is not None):
            self._stuck.pop(job_id, None)
            self._following.discard(job_id)
            self.on_exit(job_id, self._vanished(job_id))

    def _follow_logs_if_silent(self, job_id: str, pod_name: str) -> None:
        """A runner that cannot reach Redis publishes nothing: after a while, follow
        its pod log instead and put the lines into the job's event log, so clients
        watching the job still see its output live."""
        if self.events is None or job_id in self._following:
            return
        self._following.add(job_id)
        threading.Thread(target=self._relay_pod_log, args=(job_id, pod_name), daemon=True).start()

    def _relay_pod_log(self, job_id: str, pod_name: str) -> None:
        assert self.events is not None
        time.sleep(self.log_fallback_after_s)
        # The runner's first event says it is running; if it is there, the runner
        # reaches Redis and publishes for itself.
        if any(e.status == "running" for e in self.events.read(job_id, 0, limit=100)):
            return
        log.warning("job %s: runner publishes no events; relaying its pod log", job_id)
        try:
            stream = self.core.read_namespaced_pod_log(
                pod_name, self.settings.namespace, container="runner", follow=True,
                _preload_content=False,
            )  # fmt: skip
            for line in stream:  # urllib3 yields the log line by line as it grows
                self.events.append(job_id, stdout=line.decode("utf-8", "replace"))
        except Exception as exc:  # the pod went away: the final record takes over
            log.warning("job %s: pod log relay ended: %s", job_id, exc)

    def _handle(self, pod: Any) -> dict[str, Any]:
        return {
            "kind": "kubernetes",
            "namespace": pod.metadata.namespace,
            "job": job_name(pod.metadata.labels["zyra.job-id"]),
            "pod": pod.metadata.name,
        }

    def _job_failure(self, job_id: str) -> str | None:
        """The Job controller's reason for failing the Job, if it did."""
        try:
            job = self.batch.read_namespaced_job(job_name(job_id), self.settings.namespace)
        except ApiException:
            return None
        for condition in (job.status and job.status.conditions) or []:
            if condition.type in ("Failed", "FailureTarget") and condition.status == "True":
                return condition.reason
        return None

    def _terminated(self, job_id: str, pod: Any, terminated: Any) -> RunnerExit:
        reason = terminated.reason or ("Completed" if terminated.exit_code == 0 else "Error")
        if reason == "Error" and terminated.exit_code > 128:
            reason = "Signaled"  # the runner itself was killed (128+N); say so
        if pod.metadata.deletion_timestamp is not None:
            # Killed because the Job's deadline passed, not by its own doing.
            failure = self._job_failure(job_id)
            if failure == "DeadlineExceeded":
                return RunnerExit(terminated.exit_code, failure, overrides_result=True)
        if reason == "OOMKilled":
            return RunnerExit(terminated.exit_code, reason, overrides_result=True)
        return RunnerExit(terminated.exit_code, reason)

    def _vanished(self, job_id: str) -> RunnerExit:
        """The pod is gone without a terminated state: the Job's status decides; the
        runner's stored result, if any, gives the exit code."""
        failure = self._job_failure(job_id)
        if failure == "DeadlineExceeded":
            return RunnerExit(None, failure, overrides_result=True)
        return RunnerExit(None, "Lost")

    def _expire_stuck(self) -> None:
        """Fail jobs whose container has waited on its image for too long."""
        now = time.monotonic()
        for job_id, (since, reason) in list(self._stuck.items()):
            if now - since < self.pull_failure_timeout_s:
                continue
            self._stuck.pop(job_id, None)
            try:
                self.batch.delete_namespaced_job(
                    job_name(job_id), self.settings.namespace, propagation_policy="Background"
                )
            except ApiException as exc:
                if exc.status != 404:
                    log.warning("could not delete stuck job %s: %s", job_id, exc.reason)
            self.on_exit(job_id, RunnerExit(None, reason, overrides_result=True))


def _finished(job: Any) -> bool:
    return any(
        c.type in ("Complete", "Failed") and c.status == "True"
        for c in (job.status and job.status.conditions) or []
    )


def _api_message(exc: ApiException) -> str:
    """The API server's own explanation (its Status message), else the raw body."""
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.body)
    except (ValueError, AttributeError):
        return str(exc.body)
