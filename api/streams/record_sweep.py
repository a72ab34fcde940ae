"""Wakes the readers of a job whose record has ended: a record may end without a
terminal event in the log (records from before sync runs had events, a process that
died between the two writes), and its readers must end too.

One thread per API process reads the records of the jobs followed, once a second: the
cost follows the number of jobs followed, not of readers, and nothing is read while
no job is followed."""

from __future__ import annotations

import logging
import threading

import anyio

from api.jobs.store import JobStore
from api.streams.watch import JobWatch
from runner.dependencies import DependencyUnavailableError

log = logging.getLogger("zyra.streams")

SWEEP_S = 1.0


class RecordSweep:
    def __init__(self, store: JobStore, watch: JobWatch, interval_s: float = SWEEP_S) -> None:
        self.store, self.watch, self.interval_s = store, watch, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="record-sweep", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await anyio.to_thread.run_sync(self._thread.join, 5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                ended = self.ended(self.watch.followed)
            except DependencyUnavailableError as exc:
                log.warning("record sweep: %s", exc)
                self.watch.notify_threadsafe()  # readers find out, and tell their clients
                continue
            except Exception:  # the next round may fare better; say why this one failed
                log.exception("record sweep failed")
                continue
            if ended:
                self.watch.notify_threadsafe(ended)

    def ended(self, job_ids: frozenset[str]) -> list[str]:
        """The jobs among `job_ids` whose record has ended (or is gone)."""
        ended = []
        for job_id in job_ids:
            record = self.store.get(job_id)
            if record is None or record.status.is_terminal():
                ended.append(job_id)
        return ended
