"""The Kubernetes backend: a batch/v1 Job per async run, its pod watched to its exit code.

Submitting (launch, cancel, reconcile, credentials Secrets) is here; watching the
runner pods is `PodWatcher` (api/backends/pod_watch.py), and relaying a silent
runner's pod log `PodLogRelay` (api/backends/pod_logs.py): the backend composes them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from api.backends.base import LaunchRefusedError, RunnerExit, RunnerJob, RunnerReports
from api.backends.job_manifest import (
    credentials_secret,
    credentials_secret_name,
    job_manifest,
    job_name,
    spec_too_large,
)
from api.backends.pod_logs import PodLogRelay
from api.backends.pod_watch import PodWatcher
from api.observability.metrics import timing_job_create
from api.settings import KubernetesSettings
from runner import tracing
from runner.credentials import JobCredentials
from runner.events import EventLog
from runner.lifecycle import ExitReason
from runner.spec import JobSpec

log = logging.getLogger("zyra.kubernetes")

PORTABLE_ENV = frozenset(
    {"LANG", "LC_ALL", "TZ", "MPLBACKEND", "PYTHONUNBUFFERED", "PYTHON_DOTENV_DISABLED"}
)


class KubernetesBackend:
    def __init__(
        self,
        settings: KubernetesSettings,
        api_client: client.ApiClient,
        reports: RunnerReports,
        events: EventLog | None = None,
    ) -> None:
        """`events`: where a silent runner's pod log is relayed (None: nowhere)."""
        self.settings = settings
        self.reports = reports
        self.dispatch_group = f"kubernetes:{settings.namespace}"  # any replica creates the Job
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        logs = (
            PodLogRelay(
                self.core,
                settings.namespace,
                events,
                settings.log_fallback_after_s,
                json_log=settings.plain_env.get("ZYRA_LOG_FORMAT") == "json",
            )
            if events is not None
            else None
        )
        self.watcher = PodWatcher(self.core, self.batch, settings.namespace, reports,
                                  pull_failure_timeout_s=settings.pull_failure_timeout_s,
                                  logs=logs)  # fmt: skip
        self.watcher.start()

    # --- Backend ------------------------------------------------------------------------

    def launch(self, job: RunnerJob, spec: JobSpec) -> None:
        # Paths of the API's machine mean nothing in the pod: the runner makes its own
        # HOME and caches under its work volume.
        portable = {k: v for k, v in spec.env.items() if k in PORTABLE_ENV}
        spec = spec.model_copy(
            update={"work_root": f"{self.settings.work_mount}/{job.job_id}", "env": portable}
        )
        if (too_large := spec_too_large(spec)) is not None:
            raise LaunchRefusedError(too_large)  # it would never start
        credentials = self.reports.runner_credentials(spec)
        manifest = job_manifest(spec, job.stage, job.command, self.settings, job.resources,
                                with_credentials=credentials is not None,
                                trace_env=tracing.runner_env(job.traceparent))  # fmt: skip
        try:
            with timing_job_create():
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

    def cancel(self, job: RunnerJob) -> None:
        """Delete the Job; its pods go with it (background propagation)."""
        try:
            self.batch.delete_namespaced_job(
                job_name(job.job_id),
                self.settings.namespace,
                propagation_policy="Background",
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
        # The pod's end (or disappearance) is reported by the watcher; a Job that
        # never got a pod has nothing to wait for.
        if not self._pods_of(job.job_id):
            self.reports.on_runner_exit(job.job_id, RunnerExit(None, ExitReason.CANCELLED))

    def reconcile(self, active: list[RunnerJob]) -> None:
        """Settle what happened while no API was watching. A Job that is gone was
        lost; a finished Job whose pods are gone (a deadline deletes them) is settled
        from its own status; the watcher's first LIST settles the rest."""
        for job in active:
            try:
                k8s_job = self.batch.read_namespaced_job(
                    job_name(job.job_id), self.settings.namespace
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self.reports.on_runner_exit(job.job_id, RunnerExit(None, ExitReason.LOST))
                continue
            if _finished(k8s_job) and not self._pods_of(job.job_id):
                self.reports.on_runner_exit(job.job_id, self.watcher.vanished(job.job_id))

    def release(self, job_id: str) -> None:
        """Delete the run's credentials Secret (else it goes with its Job, at its TTL)."""
        try:
            self.core.delete_namespaced_secret(
                credentials_secret_name(job_id), self.settings.namespace
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def forget(self, job_ids: Sequence[str]) -> None:
        """Nothing left: a Job and its pods (logs) go at its ttlSecondsAfterFinished,
        its Secret with it."""

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
        self.watcher.stop()

    def _pods_of(self, job_id: str) -> list[Any]:
        return self.core.list_namespaced_pod(
            self.settings.namespace, label_selector=f"zyra.job-id={job_id}"
        ).items


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
