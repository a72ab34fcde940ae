"""The words of a job's life: its status, and the reason it ended.

One vocabulary for the runner, the API, its stores, its events and its OpenAPI
schema. Both are `StrEnum`s: records and events stored before they existed load
unchanged, and JSON shows the same strings.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    QUEUED = "queued"  # recorded; waiting for its principal's turn or a runner
    RUNNING = "running"  # its command (or its runner) has started
    SUCCEEDED = "succeeded"  # ended with exit code 0
    FAILED = "failed"  # ended any other way, or was lost
    CANCELLED = "cancelled"  # ended after `DELETE /jobs/{id}`, whatever its exit

    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class ExitReason(StrEnum):
    # The command's own end (runner/execute.py).
    COMPLETED = "Completed"  # exit code 0
    ERROR = "Error"  # the command's own nonzero code (1 with a traceback if it raised)
    TIMEOUT = "Timeout"  # killed at its timeout: exit 124
    SIGNALED = "Signaled"  # killed by signal N outside a cancel or timeout: exit 128+N
    CANCELLED = "Cancelled"  # the owner cancelled it
    DISK_QUOTA = "DiskQuotaExceeded"  # its work dir or binary stdout outgrew the quota: 137
    LOG_LIMIT = "LogLimitExceeded"  # its text output outgrew the log quota: exit 137
    # Ended before (or without) its command.
    SANDBOX_UNAVAILABLE = "SandboxUnavailable"  # ZYRA_SANDBOX=required, cannot confine: 126
    INPUT_MISSING = "InputMissing"  # an uploaded input left storage before it ran: exit 1
    LOST = "Lost"  # its runner (or the API serving a sync run) vanished; exit code null
    LAUNCH_FAILED = "LaunchFailed"  # the backend refused the job for good; exit code null
    # The cluster ended its runner (api/backends/kubernetes.py); wins over its result.
    DEADLINE_EXCEEDED = "DeadlineExceeded"  # the Job's activeDeadlineSeconds passed
    OOM_KILLED = "OOMKilled"  # the container outgrew its memory limit
    # The container never started: the kubelet's reason, held past the pull timeout.
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"  # the image cannot be pulled (backing off)
    ERR_IMAGE_PULL = "ErrImagePull"  # the image cannot be pulled (first attempts)
    INVALID_IMAGE_NAME = "InvalidImageName"  # the image reference does not parse
    ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"  # pull policy Never, image not on the node
    CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"  # e.g. its Secret is gone
    CREATE_CONTAINER_ERROR = "CreateContainerError"  # the runtime could not create it

    @classmethod
    def of_exit_code(cls, exit_code: int | None) -> ExitReason:
        """What an exit code alone says, for an end seen without a reason of ours."""
        if exit_code is None:
            return cls.LOST
        if exit_code == 0:
            return cls.COMPLETED
        return cls.SIGNALED if exit_code > 128 else cls.ERROR


def known_reason(fields: Any) -> Any:
    """The stored fields of a record or event, a reason outside the vocabulary (a
    kubelet's own, kept before there was one) read as what the exit code says."""
    if isinstance(fields, dict) and isinstance(fields.get("reason"), str):
        try:
            ExitReason(fields["reason"])
        except ValueError:
            return {**fields, "reason": ExitReason.of_exit_code(fields.get("exit_code"))}
    return fields
