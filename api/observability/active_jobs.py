"""Jobs queued and running, read from the job store when `/metrics` is scraped.

Not gauges moved by inc/dec: a job is queued by one process and started, finished or
settled by another (another worker or replica, or the next API process after a crash),
so per-process counts would drift and never add up. The store is the one truth every
process shares; each scrape reads its active jobs (a Redis set, or an indexed SQLite
query), so a scrape says what the store holds at that moment. Every replica reports the
same numbers: aggregate them with `max`, not `sum`. Who may scrape is limited
(scrape_auth.py) and every caller but the scrape token is rate limited: reads stay few.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.jobs.records import utcnow
from api.jobs.store import JobStore
from api.observability import labels as lv

log = logging.getLogger("zyra.metrics")


@dataclass(frozen=True)
class Snapshot:
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (mode, status)
    oldest_queued_s: dict[str, float] = field(default_factory=dict)  # mode → age
    readable: bool = True


def snapshot(store: JobStore) -> Snapshot:
    try:
        active = store.active()
    except Exception as exc:  # Redis down: the scrape still answers, saying so
        log.warning("job store not readable for metrics: %s", exc)
        return Snapshot(readable=False)
    now = utcnow()
    counts: Counter[tuple[str, str]] = Counter()
    oldest: dict[str, float] = {}
    for record in active:
        mode, status = lv.bounded(record.mode, lv.MODES), lv.bounded(record.status, lv.STATUSES)
        counts[mode, status] += 1
        if status == "queued":
            age = max(0.0, (now - record.created_at).total_seconds())
            oldest[mode] = max(oldest.get(mode, 0.0), age)
    return Snapshot(counts, oldest)


class ActiveJobsCollector(Collector):
    def __init__(self, store: JobStore, backend: str) -> None:
        self.store, self.backend = store, lv.bounded(backend, lv.BACKENDS)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = snapshot(self.store)
        up = GaugeMetricFamily(
            "zyra_job_store_up", "1 when the job store could be read at this scrape, else 0."
        )
        up.add_metric([], 1.0 if snap.readable else 0.0)
        yield up
        if not snap.readable:
            return
        jobs = GaugeMetricFamily(
            "zyra_jobs_active",
            "Jobs queued or running now, from the job store (every replica reports the "
            "same: aggregate with max). Async jobs run on the backend named.",
            labels=["backend", "mode", "status"],
        )
        oldest = GaugeMetricFamily(
            "zyra_jobs_oldest_queued_age_seconds",
            "Age of the oldest job still queued (0: none), from the job store.",
            labels=["backend", "mode"],
        )
        for mode in lv.MODES:
            for status in lv.ACTIVE_STATUSES:
                jobs.add_metric([self.backend, mode, status], snap.counts[mode, status])
            oldest.add_metric([self.backend, mode], snap.oldest_queued_s.get(mode, 0.0))
        yield jobs
        yield oldest
