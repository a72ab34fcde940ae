"""What `GET /metrics` answers: every API process's metrics plus the store's counts."""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from api.observability.active_jobs import ActiveJobsCollector
from api.observability.metrics import REGISTRY

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class _ThisProcess(Collector):
    """This process's own registry, as one collector of a scrape's registry."""

    def collect(self) -> Iterator:  # type: ignore[type-arg]
        yield from REGISTRY.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def _registry(active: ActiveJobsCollector | None) -> CollectorRegistry:
    registry = CollectorRegistry()
    folder = multiprocess_dir()
    if folder is not None:
        MultiProcessCollector(registry, path=folder)
    else:
        registry.register(_ThisProcess())
    if active is not None:
        registry.register(active)
    return registry


def render(active: ActiveJobsCollector | None) -> bytes:
    """The text format: under Gunicorn the sum over every worker's files (live and dead
    workers' counters; gauges as their mode says), else this process's registry."""
    return generate_latest(_registry(active))


def render_for(active: ActiveJobsCollector | None, accept: str | None) -> tuple[bytes, str]:
    """As `render`, in the format the scraper's Accept asks for (Prometheus' text
    format 0.0.4 unless it asks for OpenMetrics or text 1.0.0); (body, content type)."""
    encode, content_type = choose_encoder(accept or "")
    return encode(_registry(active)), content_type
