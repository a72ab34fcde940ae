"""What every backend (local processes, Kubernetes Jobs) offers the job service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from api.jobs.records import JobRecord
from runner.credentials import JobCredentials
from runner.spec import JobSpec


@dataclass(frozen=True)
class RunnerExit:
    """What a backend observed when a runner ended (or was found gone)."""

    exit_code: int | None  # None: unknown, the runner was lost
    reason: str
    # The cluster ended the runner (deadline, OOM, image): this outcome wins over
    # whatever the runner itself managed to report.
    overrides_result: bool = False


LAUNCH_FAILED = "LaunchFailed"


class LaunchRefusedError(RuntimeError):
    """The backend will never take this job as it is (e.g. the cluster finds its Job
    invalid): trying again would hold its principal's queue for ever."""


ExitCallback = Callable[[str, RunnerExit], None]
StartCallback = Callable[[str, dict[str, Any]], None]  # job id, runner handle
# Mints the job's own credentials right before its runner starts (None: it needs none).
CredentialSource = Callable[[JobSpec], JobCredentials | None]


class Backend(Protocol):
    # The API processes that can start a job this one queued (api/limits/fair_share.py).
    dispatch_group: str

    def launch(self, record: JobRecord, spec: JobSpec) -> None:
        """Queue or start the runner. When it starts, the backend reports its
        handle (StartCallback), which the job record keeps. Raises only having kept
        nothing of the job: LaunchRefusedError when trying again cannot help, anything
        else when it may (the caller queues it again)."""
        ...

    def cancel(self, record: JobRecord) -> None:
        """Stop the runner (graceful, then forced); its exit is reported as usual."""
        ...

    def reconcile(self, active: list[JobRecord]) -> None:
        """After a restart: re-attach to live runners, report the ones that are gone."""
        ...

    def release(self, job_id: str) -> None:
        """Drop what the backend keeps for a finalised job's runner (its credentials)."""
        ...

    def runner_logs(self, job_id: str) -> str | None:
        """What the runner wrote to its own stdout/stderr (the pod log), if still there."""
        ...

    def close(self) -> None: ...
