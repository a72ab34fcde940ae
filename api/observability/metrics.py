"""The service's Prometheus metrics, and the few calls that move them.

Every label value goes through api/observability/labels.py: fixed vocabularies and
the catalog, never a value a caller chose, so the number of series is bounded.

Under Gunicorn (PROMETHEUS_MULTIPROC_DIR set by api/gunicorn_conf.py before any worker
starts) each worker writes its values to files of its own in that folder and `/metrics`
adds up every worker's (prometheus_client's multiprocess mode): counters and histograms
are summed, gauges as their `multiprocess_mode` says (`livesum`: the live workers' sum;
`livemin`: the worst live worker's). Under `python -m api` they live in this process.
Jobs running and queued are not counted here but read from the job store at scrape
time (active_jobs.py); the job service moves its own through job_metrics.py. Nothing
here imports api.jobs: the backends use these too (tests/unit/api/test_import_layers.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from api.limits.rates import LimitName
from api.observability import labels as lv
from api.security.principals import Principal
from runner.sandbox import SandboxReport

REGISTRY = CollectorRegistry(auto_describe=True)  # this process's own (not multiprocess)

# Seconds: a quick sync run to an async run at its longest timeout (6 h by default).
RUN_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)
CREATE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

JOBS_SUBMITTED = Counter(
    "zyra_jobs_submitted_total",
    "Jobs recorded (a sync run once it is admitted, an async job once it is queued).",
    ["stage", "command", "mode"],
    registry=REGISTRY,
)
JOBS_FINISHED = Counter(
    "zyra_jobs_finished_total",
    "Jobs that reached a terminal status, counted once by whichever process finalised it.",
    ["stage", "command", "mode", "status", "reason"],
    registry=REGISTRY,
)
RUN_DURATION = Histogram(
    "zyra_job_run_duration_seconds",
    "How long a job's command ran (started to ended), by its final status.",
    ["stage", "mode", "status"],
    buckets=RUN_BUCKETS,
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "zyra_job_queue_wait_seconds",
    "From a job's record to its start: a sync run waiting for a slot, an async job for "
    "its principal's turn and its runner (observed when the job ends).",
    ["mode"],
    buckets=WAIT_BUCKETS,
    registry=REGISTRY,
)
SYNC_SLOTS_IN_USE = Gauge(
    "zyra_sync_slots_in_use",
    "Sync runs executing, each holding one of its API process's ZYRA_SYNC_CONCURRENCY slots.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
SYNC_SLOTS = Gauge(
    "zyra_sync_slots",
    "Sync run slots (ZYRA_SYNC_CONCURRENCY) of the live API processes, in all.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
STREAMS_OPEN = Gauge(
    "zyra_streams_open",
    "Open event streams (SSE and WebSocket: kind events) and long-polls (?wait=: kind "
    "long_poll); each holds a ZYRA_MAX_STREAMS slot of its API process.",
    ["kind"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "zyra_rate_limited_total",
    "Requests refused with 429 (WebSocket: close 4429), by the limit reached and the "
    "class of caller (api_key, oauth2, anonymous).",
    ["principal_class", "limit"],
    registry=REGISTRY,
)
CALLBACK_ATTEMPTS = Counter(
    "zyra_callback_attempts_total",
    "Callback POSTs: delivered (2xx), retrying (failed, tried again later), failed (the "
    "last attempt failed: no more tries).",
    ["outcome"],
    registry=REGISTRY,
)
WATCH_RESTARTS = Counter(
    "zyra_kubernetes_watch_restarts_total",
    "Times the runner-pod watcher listed again after its watch ended abnormally: expired "
    "(410 Gone), error (the API server refused it), interrupted (connection lost).",
    ["cause"],
    registry=REGISTRY,
)
WATCH_UP = Gauge(
    "zyra_kubernetes_watch_up",
    "1 while the runner-pod watcher's last LIST or WATCH succeeded, 0 while it retries; "
    "the lowest of the live API processes.",
    multiprocess_mode="livemin",
    registry=REGISTRY,
)
WATCH_LAST_LIST = Gauge(
    "zyra_kubernetes_watch_last_list_timestamp_seconds",
    "When the runner-pod watcher last listed the pods (it lists again at least every 30 s "
    "while healthy); the oldest of the live API processes.",
    multiprocess_mode="livemin",
    registry=REGISTRY,
)
JOB_CREATE_DURATION = Histogram(
    "zyra_kubernetes_job_create_duration_seconds",
    "Time the API server took to answer a runner Job's create, by outcome.",
    ["outcome"],
    buckets=CREATE_BUCKETS,
    registry=REGISTRY,
)
SANDBOX_LEVEL = Gauge(
    "zyra_sandbox_level",
    "Confinement of commands in force: 2 full, 1 partial, 0 none (labels: ZYRA_SANDBOX "
    "as sandbox_mode, and level).",
    ["sandbox_mode", "level"],
    multiprocess_mode="livemin",
    registry=REGISTRY,
)


def _init_children() -> None:
    """Small fixed label sets start at 0: a first increment shows in `increase()`."""
    for kind in lv.STREAM_KINDS:
        STREAMS_OPEN.labels(kind=kind)
    for principal_class in lv.PRINCIPAL_CLASSES:
        for limit in lv.LIMITS:
            RATE_LIMITED.labels(principal_class=principal_class, limit=limit)
    for outcome in lv.CALLBACK_OUTCOMES:
        CALLBACK_ATTEMPTS.labels(outcome=outcome)


_init_children()


def rate_limited(caller: Principal | Exception | None, limit: LimitName) -> None:
    """A 429; `caller` as the authenticator left it: a principal, or why there is none."""
    RATE_LIMITED.labels(
        principal_class=lv.principal_class(caller), limit=lv.limit_label(limit)
    ).inc()


def stream_opened(kind: str) -> None:
    STREAMS_OPEN.labels(kind=lv.bounded(kind, lv.STREAM_KINDS)).inc()


def stream_closed(kind: str) -> None:
    STREAMS_OPEN.labels(kind=lv.bounded(kind, lv.STREAM_KINDS)).dec()


def callback_attempt(delivered: bool, retrying: bool) -> None:
    outcome = "delivered" if delivered else "retrying" if retrying else "failed"
    CALLBACK_ATTEMPTS.labels(outcome=outcome).inc()


def watch_listed() -> None:
    """The pod watcher has a fresh LIST: it is up."""
    WATCH_UP.set(1)
    WATCH_LAST_LIST.set(time.time())


def watch_restarted(cause: str) -> None:
    WATCH_UP.set(0)
    WATCH_RESTARTS.labels(cause=lv.bounded(cause, lv.WATCH_CAUSES)).inc()


def watch_started() -> None:
    """A new watcher: down until its first LIST; its restart causes start at 0."""
    WATCH_UP.set(0)
    WATCH_LAST_LIST.set(time.time())
    for cause in lv.WATCH_CAUSES:
        WATCH_RESTARTS.labels(cause=cause)


# The API server's answer to a Job create, by HTTP status of its refusal.
_CREATE_REFUSALS = {400: "refused", 422: "refused", 409: "exists"}


@contextmanager
def timing_job_create() -> Iterator[None]:
    """Times one Job create; its outcome from the exception's `status`, if any."""
    start, outcome = time.monotonic(), "error"
    try:
        yield
        outcome = "created"
    except Exception as exc:
        outcome = _CREATE_REFUSALS.get(getattr(exc, "status", None) or 0, "error")
        raise
    finally:
        JOB_CREATE_DURATION.labels(outcome=outcome).observe(time.monotonic() - start)


def observe_sandbox(report: SandboxReport) -> None:
    level = lv.bounded(report.level, lv.SANDBOX_LEVELS)
    value = lv.SANDBOX_LEVELS.index(level) if level != lv.OTHER else 0
    sandbox_mode = lv.bounded(report.mode, lv.SANDBOX_MODES)
    SANDBOX_LEVEL.labels(sandbox_mode=sandbox_mode, level=level).set(value)
