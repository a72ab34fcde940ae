"""Job records stored before the status/reason vocabulary load, and show the same."""

from __future__ import annotations

import json

import pytest

from api.jobs.records import JobRecord
from runner.lifecycle import ExitReason, JobStatus

STORED = {
    "job_id": "a" * 32, "mode": "async", "stage": "visualize", "command": "heatmap",
    "args": {}, "submitted_by": "alice", "status": "failed", "exit_code": 2, "reason": "Error",
}  # fmt: skip


def test_a_stored_record_loads_with_the_vocabulary_and_dumps_the_same_strings() -> None:
    record = JobRecord.model_validate_json(json.dumps(STORED))
    assert record.status is JobStatus.FAILED and record.reason is ExitReason.ERROR
    dumped = json.loads(record.model_dump_json())
    assert (dumped["status"], dumped["reason"]) == ("failed", "Error")


@pytest.mark.parametrize(
    ("kubelet_reason", "exit_code", "reason"),
    [
        ("ContainerCannotRun", 128, ExitReason.ERROR),
        ("StartError", 1, ExitReason.ERROR),
        ("ContainerStatusUnknown", 137, ExitReason.SIGNALED),
    ],
)
def test_a_kubelet_reason_outside_the_vocabulary_reads_as_its_exit_code_says(
    kubelet_reason: str, exit_code: int, reason: ExitReason
) -> None:
    stored = {**STORED, "exit_code": exit_code, "reason": kubelet_reason}
    assert JobRecord.model_validate_json(json.dumps(stored)).reason is reason
