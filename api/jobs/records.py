"""The job record: what the service remembers about one run."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, model_validator

from runner import progress
from runner.lifecycle import ExitReason, JobStatus, known_reason
from runner.outputs import OutputFile


class RunMode(StrEnum):
    SYNC = "sync"
    ASYNC = "async"


class DeliveryState(StrEnum):
    PENDING = "pending"  # the job runs, or attempts go on
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # a final refusal, a refused destination, or the window passed


class CallbackDelivery(BaseModel):
    """Where a job's callback stands: what `GET /jobs/{id}` shows of it."""

    state: DeliveryState = DeliveryState.PENDING
    attempts: int = Field(0, description="POSTs made so far.")
    last_status: int | None = Field(None, description="HTTP status of the last answer.")
    last_error: str | None = Field(
        None, description="Why the last attempt failed (no answer, or a refused one)."
    )
    delivered_at: datetime | None = None
    next_attempt_at: datetime | None = Field(None, description="When it is tried again.")


class CallbackTarget(BaseModel):
    """Where and how to POST: kept in the record, never shown (it may hold credentials)."""

    url: str
    secret: str | None = None  # signs the body (Zyra-Signature)
    headers: dict[str, str] = Field(default_factory=dict)


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobRecord(BaseModel):
    job_id: str
    status: JobStatus = JobStatus.QUEUED
    mode: RunMode
    stage: str
    command: str
    args: dict[str, Any]
    submitted_by: str
    owner: str = Field(
        "", description="The principal's id (api/security/principals.py): who may see it."
    )
    exit_code: int | None = None
    reason: ExitReason | None = None
    progress: float = 0.0
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    stdout_is_binary: bool = False
    outputs: list[OutputFile] = Field(default_factory=list)
    duration_s: float | None = None
    timeout_s: float | None = None
    callback_target: CallbackTarget | None = None
    callback: CallbackDelivery | None = None
    callback_claimed_until: datetime | None = Field(
        None, description="An API process is making a callback attempt until then."
    )
    metadata: dict[str, Any] | None = Field(None, description="The client's, echoed back.")
    resources: dict[str, str] | None = None
    cancel_requested: bool = False
    runner: dict[str, Any] | None = Field(
        None, description="The backend's handle on the runner (pid, pod name, ...)."
    )
    traceparent: str | None = Field(
        None,
        description="W3C trace context of the request that made the job (runner/tracing.py): "
        "its runner and its end join that trace. None while tracing is off.",
    )
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outputs_expired_at: datetime | None = Field(
        None, description="When its outputs left storage (the record outlives them)."
    )

    @model_validator(mode="before")
    @classmethod
    def _known_reason(cls, fields: Any) -> Any:
        return known_reason(fields)

    @model_validator(mode="before")
    @classmethod
    def _legacy_callback_url(cls, fields: Any) -> Any:
        """Records from before `callback_target` named only its URL. One still running
        gets its callback when it ends; one that ended had it from the old code."""
        if isinstance(fields, dict) and "callback_url" in fields:
            fields = dict(fields)
            url = fields.pop("callback_url")
            if url and not fields.get("callback_target"):
                fields["callback_target"] = {"url": url}
                status = JobStatus(fields.get("status", JobStatus.QUEUED))
                if fields.get("callback") is None and not status.is_terminal():
                    fields["callback"] = {}
        return fields

    @model_validator(mode="after")
    def _legacy_owner(self) -> JobRecord:
        """Records from before principals belong to the API key that submitted them."""
        if not self.owner:
            self.owner = f"key:{self.submitted_by}"
        return self


def terminal_event(record: JobRecord) -> dict[str, Any]:
    """The fields of an ended job's terminal event. The same whoever builds them: its
    finaliser stores them just after the record, and a stream that finds the record
    ended before the log holds them builds the message itself (api/streams/follow.py),
    so every client sees one terminal event, whichever copy reached it."""
    ended = record.finished_at or record.started_at or record.created_at
    return {
        "ts": ended.timestamp(),
        "status": record.status,
        "exit_code": record.exit_code,
        "reason": record.reason,
        "progress": progress.DONE,
    }
