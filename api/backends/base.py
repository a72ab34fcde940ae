"""What every backend (local processes, Kubernetes Jobs) offers the job service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from api.resources import RunResources
from runner.credentials import JobCredentials
from runner.lifecycle import ExitReason
from runner.spec import JobSpec


@dataclass(frozen=True)
class RunnerExit:
    """What a backend observed when a runner ended (or was found gone)."""

    exit_code: int | None  # None: unknown, the runner was lost
    reason: ExitReason
    # The cluster ended the runner (deadline, OOM, image): this outcome wins over
    # whatever the runner itself managed to report.
    overrides_result: bool = False


class LaunchRefusedError(RuntimeError):
    """The backend will never take this job as it is (e.g. the cluster finds its Job
    invalid): trying again would hold its principal's queue for ever."""


@dataclass(frozen=True)
class RunnerJob:
    """What a backend knows of a job: enough to start, stop or find its runner."""

    job_id: str
    stage: str
    command: str
    resources: RunResources | None = None  # the run's own, already within the limits
    runner_handle: dict[str, Any] | None = None  # as reported when its runner started
    traceparent: str | None = None  # the runner continues this trace (runner/tracing.py)


class RunnerReports(Protocol):
    """What a backend tells the job service about its runners (the service is one).
    Reports may repeat (a re-listed pod, a second replica): each is idempotent."""

    def on_runner_started(self, job_id: str, handle: dict[str, Any]) -> None:
        """The runner started (maybe after waiting its turn); `handle` finds it again."""
        ...

    def on_runner_exit(self, job_id: str, observed: RunnerExit) -> None:
        """The runner ended, or was found gone."""
        ...

    def runner_credentials(self, spec: JobSpec) -> JobCredentials | None:
        """The job's own credentials, minted right before its runner starts (None: it
        needs none)."""
        ...


class Backend(Protocol):
    # The API processes that can start a job this one queued (api/limits/fair_share.py).
    dispatch_group: str

    def launch(self, job: RunnerJob, spec: JobSpec) -> None:
        """Queue or start the runner. When it starts, the backend reports its
        handle (RunnerReports.on_runner_started), which the job record keeps. Raises only
        having kept nothing of the job: LaunchRefusedError when trying again cannot help,
        anything else when it may (the caller queues it again)."""
        ...

    def cancel(self, job: RunnerJob) -> None:
        """Stop the runner (graceful, then forced); its exit is reported as usual."""
        ...

    def reconcile(self, active: list[RunnerJob]) -> None:
        """After a restart: re-attach to live runners, report the ones that are gone.
        `active` is oldest first; jobs that wait for a runner keep that order."""
        ...

    def release(self, job_id: str) -> None:
        """Drop what the backend keeps for a finalised job's runner (its credentials)."""
        ...

    def runner_logs(self, job_id: str) -> str | None:
        """What the runner wrote to its own stdout/stderr (the pod log), if still there."""
        ...

    def forget(self, job_ids: Sequence[str]) -> None:
        """Delete what the backend still keeps of expired jobs (runner logs, specs)."""
        ...

    def close(self) -> None: ...
