"""Retention: a background sweep deletes what outlived its TTL.

- uploads, ZYRA_UPLOAD_TTL_S after they were stored;
- a job's outputs, ZYRA_RESULT_TTL_S after they were stored: its record then says when
  (`outputs_expired_at`) and downloads answer 410;
- a finished job, ZYRA_JOB_TTL_S after its `finished_at`: its outputs, events and
  runner result, what the backend keeps (a local runner's log and spec), and last its
  record, so that a sweep cut short (a restart, Redis down) is finished by the next.
  Queued and running jobs never expire.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from api.backends.base import Backend
from api.jobs.store import JobStore
from api.settings import Settings
from runner.dependencies import DependencyUnavailableError
from runner.events import EventLog
from runner.storage import Storage, delete_expired, results_prefix

log = logging.getLogger("zyra.retention")
BATCH = 200  # jobs forgotten per round trip to the stores


class RetentionCleaner:
    def __init__(
        self,
        settings: Settings,
        *,
        storage: Storage,
        store: JobStore,
        events: EventLog,
        backend: Backend,
    ) -> None:
        self.settings, self.storage, self.store = settings, storage, store
        self.events, self.backend = events, backend
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def run_once(self, now: float) -> dict[str, int]:
        """One sweep as of `now` (epoch seconds); how many of each went."""
        at = datetime.fromtimestamp(now, UTC)
        uploads = delete_expired(self.storage, "uploads", self.settings.upload_ttl_s, now)
        results = delete_expired(self.storage, "results", self.settings.result_ttl_s, now)
        for job_id in results:
            self.store.mark_outputs_expired(job_id, at)
        jobs = self._forget_jobs(at - timedelta(seconds=self.settings.job_ttl_s))
        return {"uploads": len(uploads), "results": len(results), "jobs": jobs}

    def _forget_jobs(self, finished_before: datetime) -> int:
        forgotten, seen = 0, set[str]()
        while batch := self.store.finished_before(finished_before, BATCH):
            if seen.intersection(batch):  # not forgotten after all: never loop on it
                log.warning("retention: jobs %s were not forgotten", sorted(seen & set(batch)))
                break
            seen.update(batch)
            for job_id in batch:
                self.storage.delete_prefix(results_prefix(job_id))
            self.events.forget(batch)
            self.backend.forget(batch)
            self.store.forget(batch)  # last: what is left of a job is found again
            forgotten += len(batch)
        return forgotten

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.cleanup_interval_s):
            try:
                removed = self.run_once(time.time())
            except DependencyUnavailableError as exc:
                log.warning("retention sweep skipped: %s", exc)
                continue
            except Exception:  # the next sweep tries again; the thread must not die
                log.exception("retention sweep failed")
                continue
            if any(removed.values()):
                log.info("retention sweep removed %s", removed)
