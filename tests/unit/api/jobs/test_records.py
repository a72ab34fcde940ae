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


def test_a_record_from_before_callback_targets_keeps_its_callback_if_it_still_runs() -> None:
    base = {"job_id": "a" * 32, "mode": "async", "stage": "visualize", "command": "heatmap",
            "args": {}, "submitted_by": "alice",
            "callback_url": "https://hooks.example.org/h"}  # fmt: skip
    running = JobRecord.model_validate({**base, "status": "running"})
    assert running.callback_target is not None
    assert running.callback_target.url == "https://hooks.example.org/h"
    assert running.callback is not None and running.callback.state == "pending"
    ended = JobRecord.model_validate({**base, "status": "succeeded"})
    assert ended.callback_target is not None and ended.callback is None  # delivered before
