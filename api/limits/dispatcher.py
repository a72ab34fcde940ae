"""Hands each principal's async jobs to the backend while it has room under its cap
(ZYRA_MAX_RUNNING_JOBS_PER_PRINCIPAL); the rest wait `queued` in its own queue, in
order, so they hold back no other principal (api/limits/fair_share.py).

Dispatch happens when a job is submitted, when one ends, and every
ZYRA_FAIR_SHARE_DISPATCH_INTERVAL_S as a safety net: for jobs queued by another API
process of the same group, for a backend that could not take a job, and for claims
that a process which died never released.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from api.limits.fair_share import FairShareQueue, QueuedJob
from runner.dependencies import DependencyUnavailableError
from runner.spec import JobSpec

log = logging.getLogger("zyra.fair_share")

# Job id, spec → the backend took it (or raises); False: the job had ended, nothing to run.
Launch = Callable[[str, JobSpec], bool]


class FairShareDispatcher:
    def __init__(
        self,
        queue: FairShareQueue,
        cap: int,
        group: str,
        launch: Launch,
        has_ended: Callable[[str], bool],
        interval_s: float,
    ) -> None:
        self.queue, self.cap, self.group = queue, cap, group
        self.launch, self.has_ended = launch, has_ended
        self.interval_s = interval_s
        # Claims and launches of this process one at a time: a job is never between its
        # queue and the backend while `reconcile` or `withdraw` looks.
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def submit(self, owner: str, job_id: str, spec: JobSpec) -> None:
        self.queue.enqueue(owner, job_id, self.group, spec.model_dump_json())
        try:
            self.dispatch(owner)
        except DependencyUnavailableError as exc:  # it is queued: the next tick starts it
            log.warning("job %s queued, not dispatched yet: %s", job_id, exc)

    def dispatch(self, owner: str) -> None:
        """Launch what `owner` has room for. A job the backend refuses is put back
        first in line and tried again on the next tick."""
        with self._lock:
            claimed = self.queue.claim(owner, self.group, self.cap)
            for i, job in enumerate(claimed):
                try:
                    if not self.launch(job.job_id, JobSpec.model_validate_json(job.spec)):
                        self.queue.release(owner, job.job_id)
                except Exception:
                    log.exception("job %s could not be started; it waits its turn again",
                                  job.job_id)  # fmt: skip
                    self._put_back(owner, claimed[i:])
                    return

    def _put_back(self, owner: str, jobs: list[QueuedJob]) -> None:
        try:
            self.queue.put_back(owner, self.group, jobs)
        except Exception:  # the claims lapse: `prune` releases them once the jobs end
            log.exception("jobs %s could not be queued again", [j.job_id for j in jobs])

    def ended(self, owner: str, job_id: str) -> None:
        """A job of `owner` is final: its room goes to the next one."""
        self.queue.release(owner, job_id)
        self.dispatch(owner)

    def withdraw(self, owner: str, job_id: str) -> bool:
        """Take a job out of its queue (a cancel): whether it was still waiting there."""
        with self._lock:
            return self.queue.withdraw(owner, job_id)

    @contextmanager
    def holding(self) -> Iterator[set[str]]:
        """The jobs waiting in queues, with no claim of this process under way."""
        with self._lock:
            yield self.queue.waiting_jobs()

    def dispatch_all(self) -> None:
        """Every principal with waiting jobs, after releasing claims of ended jobs
        (a process that died after finalising one never released it)."""
        for owner in self.queue.waiting_owners():
            for job_id in self.queue.running(owner):
                if self.has_ended(job_id):
                    self.queue.release(owner, job_id)
            self.dispatch(owner)

    def start(self) -> None:
        self._ticker = threading.Thread(target=self._tick, name="fair-share", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.dispatch_all()
            except Exception as exc:  # e.g. Redis down: the next tick tries again
                log.warning("queued jobs not dispatched: %s", exc)
