"""What every backend (local processes, Kubernetes Jobs) offers the job service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from api.jobs.records import JobRecord
from runner.spec import JobSpec


@dataclass(frozen=True)
class RunnerExit:
    """What a backend observed when a runner ended (or was found gone)."""

    exit_code: int | None  # None: unknown, the runner was lost
    reason: str


ExitCallback = Callable[[str, RunnerExit], None]


class Backend(Protocol):
    def launch(self, record: JobRecord, spec: JobSpec) -> dict[str, Any]:
        """Start the runner; returns the handle stored in the job record."""
        ...

    def cancel(self, record: JobRecord) -> None:
        """Stop the runner (graceful, then forced); its exit is reported as usual."""
        ...

    def reconcile(self, active: list[JobRecord]) -> None:
        """After a restart: re-attach to live runners, report the ones that are gone."""
        ...

    def close(self) -> None: ...
