"""The local backend works on the runner's own view of a job and reports to the service
through one interface (RunnerReports)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from api.backends.base import RunnerExit, RunnerJob
from api.backends.local import LocalBackend
from runner.lifecycle import ExitReason
from runner.spec import JobSpec
from tests.unit.api.backends.reports import JOB_ID, Reports


def backend(tmp_path: Path, reports: Reports, max_running: int = 0) -> LocalBackend:
    return LocalBackend(tmp_path / "work", {}, reports, kill_grace_s=1.0, max_running=max_running)


def job(runner_handle: dict[str, Any] | None = None) -> RunnerJob:
    return RunnerJob(job_id=JOB_ID, stage="visualize", command="heatmap",
                     runner_handle=runner_handle)  # fmt: skip


def spec(tmp_path: Path) -> JobSpec:
    return JobSpec(job_id=JOB_ID, argv=["visualize", "heatmap"], timeout_s=5, env={},
                   work_root=str(tmp_path / "work" / JOB_ID))  # fmt: skip


def test_a_job_cancelled_while_waiting_for_a_slot_is_reported_cancelled(tmp_path: Path) -> None:
    reports = Reports()
    local = backend(tmp_path, reports)  # no free slot: the job waits
    local.launch(job(), spec(tmp_path))
    assert local.spec_path(JOB_ID).exists()
    local.cancel(job())
    assert reports.exits == [(JOB_ID, RunnerExit(None, ExitReason.CANCELLED))]
    assert reports.started == []
    assert not local.spec_path(JOB_ID).exists()


def test_after_a_restart_a_runner_that_is_gone_is_reported_lost(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    reports = Reports()
    handle = {"kind": "local", "pid": gone.pid, "start_ticks": 1}
    backend(tmp_path, reports).reconcile([job(handle)])
    assert reports.exits == [(JOB_ID, RunnerExit(None, ExitReason.LOST))]


def test_after_a_restart_a_job_that_never_started_waits_again(tmp_path: Path) -> None:
    reports = Reports()
    earlier = backend(tmp_path, reports)
    earlier.launch(job(), spec(tmp_path))  # waiting when its API process ended
    restarted = backend(tmp_path, reports)
    restarted.reconcile([job()])
    assert reports.exits == []  # queued again, not lost
    restarted.cancel(job())
    assert reports.exits == [(JOB_ID, RunnerExit(None, ExitReason.CANCELLED))]
