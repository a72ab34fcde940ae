"""The job service's metrics: jobs submitted and finished, run time, queue wait, sync slots."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from api.jobs.records import JobRecord
from api.observability import labels as lv
from api.observability.metrics import (
    JOBS_FINISHED,
    JOBS_SUBMITTED,
    QUEUE_WAIT,
    RUN_DURATION,
    SYNC_SLOTS,
    SYNC_SLOTS_IN_USE,
)
from runner.catalog import CommandCatalog


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return max(0.0, (end - start).total_seconds()) if start and end else None


class JobMetrics:
    """The job service's metrics, with stage and command labels bounded by its catalog."""

    def __init__(self, catalog: CommandCatalog, sync_slots: int) -> None:
        self.labels = lv.CatalogLabels.of(catalog)
        SYNC_SLOTS.set(sync_slots)  # this process's; summed over the live ones

    def _what(self, record: JobRecord) -> dict[str, str]:
        return {
            "stage": self.labels.stage(record.stage),
            "command": self.labels.command(record.stage, record.command),
            "mode": lv.bounded(record.mode, lv.MODES),
        }

    def submitted(self, record: JobRecord) -> None:
        JOBS_SUBMITTED.labels(**self._what(record)).inc()

    def finished(self, record: JobRecord) -> None:
        """Once per job: by the process whose compare-and-set finalised it."""
        what = self._what(record)
        status = lv.bounded(record.status, lv.STATUSES)
        JOBS_FINISHED.labels(**what, status=status, reason=lv.reason_label(record.reason)).inc()
        ran = record.duration_s
        if ran is None:
            ran = _seconds(record.started_at, record.finished_at)
        if ran is not None:
            RUN_DURATION.labels(stage=what["stage"], mode=what["mode"], status=status).observe(ran)
        waited = _seconds(record.created_at, record.started_at)
        if waited is not None:
            QUEUE_WAIT.labels(mode=what["mode"]).observe(waited)

    @contextmanager
    def sync_slot(self) -> Iterator[None]:
        with SYNC_SLOTS_IN_USE.track_inprogress():
            yield
