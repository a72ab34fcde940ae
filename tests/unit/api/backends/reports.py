"""What the job service hears from a backend, recorded for the backend tests."""

from __future__ import annotations

from typing import Any

from api.backends.base import RunnerExit
from runner.credentials import JobCredentials
from runner.spec import JobSpec

JOB_ID = "0123456789abcdef0123456789abcdef"


class Reports:
    """A `RunnerReports` that keeps what it is told (and mints no credentials)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, dict[str, Any]]] = []
        self.exits: list[tuple[str, RunnerExit]] = []

    def on_runner_started(self, job_id: str, handle: dict[str, Any]) -> None:
        self.started.append((job_id, handle))

    def on_runner_exit(self, job_id: str, observed: RunnerExit) -> None:
        self.exits.append((job_id, observed))

    def runner_credentials(self, spec: JobSpec) -> JobCredentials | None:
        return None
