"""The metrics: names and labels as documented, label values bounded whatever a caller
sends, and Gunicorn's workers added up (prometheus_client's multiprocess mode, in real
processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.requests import HTTPConnection

from api.jobs.records import DeliveryState, JobRecord, RunMode, utcnow
from api.jobs.store import SqliteJobStore
from api.limits.rates import LimitName
from api.observability import labels as lv
from api.observability import metrics
from api.observability.active_jobs import ActiveJobsCollector
from api.observability.exposition import render
from api.observability.job_metrics import JobMetrics
from api.observability.scrape_auth import presents_scrape_token
from api.security.principals import Principal, Scope
from api.settings import Settings
from runner.catalog import CommandCatalog
from runner.lifecycle import ExitReason, JobStatus
from runner.sandbox import SandboxMode, SandboxReport
from tests.services import REPO

# Every label of every metric, and the values it may take (None: the catalog's).
VOCABULARY: dict[str, tuple[str, ...] | None] = {
    "stage": None,
    "command": None,
    "mode": lv.MODES,
    "status": lv.STATUSES,
    "reason": lv.REASONS,
    "principal_class": lv.PRINCIPAL_CLASSES,
    "limit": lv.LIMITS,
    "outcome": (*lv.CALLBACK_OUTCOMES, *lv.JOB_CREATE_OUTCOMES),
    "cause": lv.WATCH_CAUSES,
    "kind": lv.STREAM_KINDS,
    "level": lv.SANDBOX_LEVELS,
    "sandbox_mode": lv.SANDBOX_MODES,  # not `mode`: that label is a job's (sync, async)
    "backend": lv.BACKENDS,
    "le": None,  # histogram buckets: fixed by the code
}


def families(text: bytes | str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """name → [(sample name, labels, value)], as Prometheus' text parser reads them."""
    parsed = text_string_to_metric_families(text.decode() if isinstance(text, bytes) else text)
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in parsed}


def value(text: bytes, sample: str, **labels: str) -> float:
    """A sample's value (0 when absent: a counter not moved yet)."""
    for family in families(text).values():
        for name, found, number in family:
            if name == sample and found == labels:
                return number
    return 0.0


def series_of(text: bytes, family: str) -> set[tuple[tuple[str, str], ...]]:
    """The label sets of a counter's `_total` samples."""
    rows = families(text).get(family, [])
    return {tuple(sorted(labels.items())) for name, labels, _ in rows if name.endswith("_total")}


def record(stage: str, command: str, **fields: object) -> JobRecord:
    fields = {"mode": RunMode.SYNC, **fields}
    return JobRecord(job_id=uuid.uuid4().hex, stage=stage, command=command, args={},
                     submitted_by="alice", owner="key:alice", **fields)  # fmt: skip


def test_every_metric_is_zyra_prefixed_documented_and_labelled_from_the_vocabulary() -> None:
    found = families(render(None))
    assert {"zyra_jobs_submitted", "zyra_jobs_finished", "zyra_job_run_duration_seconds",
            "zyra_job_queue_wait_seconds", "zyra_sync_slots_in_use", "zyra_sync_slots",
            "zyra_streams_open", "zyra_rate_limited", "zyra_callback_attempts",
            "zyra_kubernetes_watch_restarts", "zyra_kubernetes_watch_up",
            "zyra_kubernetes_watch_last_list_timestamp_seconds",
            "zyra_kubernetes_job_create_duration_seconds",
            "zyra_sandbox_level"} <= set(found)  # fmt: skip
    for metric in metrics.REGISTRY.collect():
        assert metric.name.startswith("zyra_") and metric.documentation, metric.name
    for name, samples in found.items():
        for _, labels, _ in samples:
            for label, label_value in labels.items():
                assert label in VOCABULARY, f"{name} has label {label}"
                allowed = VOCABULARY[label]
                if allowed is not None:
                    assert label_value in allowed, f"{name}{{{label}={label_value!r}}}"


def test_stage_and_command_labels_are_the_catalogs_whatever_a_record_says(
    catalog: CommandCatalog,
) -> None:
    job_metrics = JobMetrics(catalog, sync_slots=4)
    before = series_of(render(None), "zyra_jobs_finished")
    for i in range(50):  # what a caller could make up, or a record from an older catalog
        bogus = record(f"stage-{i}", f"command-{i}\n{{x=\"y\"}}", status=JobStatus.FAILED,
                       reason=ExitReason.ERROR)  # fmt: skip
        job_metrics.submitted(bogus)
        job_metrics.finished(bogus)
    job_metrics.finished(record("visualize", "heatmap", status=JobStatus.SUCCEEDED,
                                reason=ExitReason.COMPLETED, duration_s=1.5))  # fmt: skip
    text = render(None)
    after = series_of(text, "zyra_jobs_finished")
    new = after - before
    stages = {dict(labels)["stage"] for labels in after}
    commands = {dict(labels)["command"] for labels in after}
    assert stages <= {*catalog.stages, lv.OTHER}
    assert commands <= {c for s in catalog.stages.values() for c in s.commands} | {lv.OTHER}
    assert len(new) <= 4  # 50 made-up names: one `other` series, not 50
    other = {"stage": "other", "command": "other", "mode": "sync", "status": "failed",
             "reason": "Error"}  # fmt: skip
    assert value(text, "zyra_jobs_finished_total", **other) >= 50
    done = {"stage": "visualize", "command": "heatmap", "mode": "sync"}
    assert value(text, "zyra_jobs_finished_total", **done, status="succeeded",
                 reason="Completed") >= 1  # fmt: skip
    assert value(text, "zyra_job_run_duration_seconds_count", stage="visualize", mode="sync",
                 status="succeeded") >= 1  # fmt: skip
    assert value(text, "zyra_sync_slots") == 4


def test_vocabularies_are_the_enums_of_the_records() -> None:
    """Spelt out in labels.py (the backends may not import job records): kept equal here."""
    assert tuple(m.value for m in RunMode) == lv.MODES
    final = {s.value for s in DeliveryState} - {DeliveryState.PENDING.value}
    assert set(lv.CALLBACK_OUTCOMES) == final | {"retrying"}


def test_a_reason_outside_the_vocabulary_is_other_and_none_is_none() -> None:
    assert lv.reason_label(None) == "none"
    assert lv.reason_label("Made Up") == "other"
    assert lv.reason_label(ExitReason.OOM_KILLED) == "OOMKilled"
    assert lv.bounded("queued", lv.STATUSES) == "queued"
    assert lv.bounded('x"}\nfoo 1', lv.STATUSES) == "other"


def test_queue_wait_and_run_time_come_from_the_record() -> None:
    job_metrics = JobMetrics(CommandCatalog({}), sync_slots=1)
    created = utcnow() - timedelta(seconds=100)
    before = render(None)
    job_metrics.finished(record("x", "y", status=JobStatus.SUCCEEDED, created_at=created,
                                started_at=created + timedelta(seconds=40),
                                finished_at=created + timedelta(seconds=100)))  # fmt: skip
    # Cancelled while queued: never started, so no wait and no run time.
    job_metrics.finished(record("x", "y", status=JobStatus.CANCELLED, created_at=created))
    after = render(None)

    def moved(sample: str, **labels: str) -> float:
        return value(after, sample, **labels) - value(before, sample, **labels)

    assert moved("zyra_job_queue_wait_seconds_count", mode="sync") == 1
    assert moved("zyra_job_queue_wait_seconds_sum", mode="sync") == pytest.approx(40, abs=0.01)
    run = {"stage": "other", "mode": "sync", "status": "succeeded"}
    assert moved("zyra_job_run_duration_seconds_sum", **run) == pytest.approx(60, abs=0.01)
    assert moved("zyra_job_run_duration_seconds_count", stage="other", mode="sync",
                 status="cancelled") == 0  # fmt: skip


def test_rate_limit_refusals_count_principal_classes_never_names() -> None:
    key = Principal.for_api_key("alice-the-secret-name", frozenset({Scope.RUN}))
    before = render(None)
    metrics.rate_limited(key, LimitName.SYNC_RUNS)
    metrics.rate_limited(None, LimitName.FAILED_AUTHENTICATIONS)
    metrics.rate_limited(ValueError("a refused credential"), LimitName.ADDRESS_REQUESTS)
    after = render(None)
    assert b"alice" not in after

    def moved(**labels: str) -> float:
        return value(after, "zyra_rate_limited_total", **labels) - value(
            before, "zyra_rate_limited_total", **labels
        )

    assert moved(principal_class="api_key", limit="sync_runs") == 1
    assert moved(principal_class="anonymous", limit="failed_authentications") == 1
    assert moved(principal_class="anonymous", limit="address_requests") == 1
    # Every class and limit is there from the start, at 0 if nothing happened.
    rows = families(after)["zyra_rate_limited"]
    series = {tuple(sorted(labels.items())) for name, labels, _ in rows if name.endswith("_total")}
    assert len(series) == len(lv.PRINCIPAL_CLASSES) * len(lv.LIMITS)


def test_sandbox_level_is_a_number_with_sandbox_mode_and_level() -> None:
    report = SandboxReport(mode=SandboxMode.BEST_EFFORT, level="partial", landlock_abi=0,
                           filesystem=False, scoped=False, identity="uid 0")  # fmt: skip
    metrics.observe_sandbox(report)
    assert (
        value(render(None), "zyra_sandbox_level", sandbox_mode="best-effort", level="partial") == 1
    )


def test_job_create_outcome_follows_the_api_servers_answer() -> None:
    class Refusal(Exception):
        def __init__(self, status: int) -> None:
            self.status = status

    before = render(None)
    with metrics.timing_job_create():
        pass
    for status in (409, 422, 500):
        with pytest.raises(Refusal), metrics.timing_job_create():
            raise Refusal(status)
    after = render(None)
    for outcome in ("created", "exists", "refused", "error"):
        sample = "zyra_kubernetes_job_create_duration_seconds_count"
        assert value(after, sample, outcome=outcome) - value(before, sample, outcome=outcome) == 1


def test_active_jobs_come_from_the_store(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    old = utcnow() - timedelta(seconds=300)
    store.save(record("a", "b", status=JobStatus.QUEUED, mode=RunMode.ASYNC, created_at=old))
    store.save(record("a", "b", status=JobStatus.QUEUED, mode=RunMode.ASYNC))
    store.save(record("a", "b", status=JobStatus.RUNNING, mode=RunMode.ASYNC))
    store.save(record("a", "b", status=JobStatus.SUCCEEDED, mode=RunMode.ASYNC))
    text = render(ActiveJobsCollector(store, "kubernetes"))
    assert value(text, "zyra_job_store_up") == 1
    k8s = {"backend": "kubernetes"}
    assert value(text, "zyra_jobs_active", **k8s, mode="async", status="queued") == 2
    assert value(text, "zyra_jobs_active", **k8s, mode="async", status="running") == 1
    assert value(text, "zyra_jobs_active", **k8s, mode="sync", status="queued") == 0
    age = value(text, "zyra_jobs_oldest_queued_age_seconds", **k8s, mode="async")
    assert 299 < age < 400
    assert value(text, "zyra_jobs_oldest_queued_age_seconds", **k8s, mode="sync") == 0


def test_an_unreadable_store_is_reported_not_an_error(tmp_path: Path) -> None:
    class Down(SqliteJobStore):
        def active(self) -> list[JobRecord]:
            raise ConnectionError("store down")

    text = render(ActiveJobsCollector(Down(tmp_path / "jobs.sqlite3"), "local"))
    assert value(text, "zyra_job_store_up") == 0
    assert "zyra_jobs_active" not in families(text)


def _conn(authorization: str | None) -> HTTPConnection:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return HTTPConnection({"type": "http", "path": "/metrics", "headers": headers})


def test_the_scrape_token_is_a_bearer_token_compared_whole() -> None:
    token = SecretStr("s" * 32)
    assert presents_scrape_token(_conn(f"Bearer {'s' * 32}"), token)
    assert presents_scrape_token(_conn(f"bearer  {'s' * 32} "), token)
    for wrong in (None, "Bearer " + "s" * 31, "Bearer " + "s" * 33, f"Basic {'s' * 32}",
                  "Bearer", "s" * 32):  # fmt: skip
        assert not presents_scrape_token(_conn(wrong), token), wrong
    assert not presents_scrape_token(_conn("Bearer "), None)


def test_a_blank_scrape_token_is_no_token(tmp_path: Path) -> None:
    for blank in ("", "  "):
        settings = Settings(data_dir=tmp_path, metrics_token=blank)
        assert settings.metrics_token is None
        assert not presents_scrape_token(_conn(f"Bearer {blank}"), settings.metrics_token)
    assert Settings(data_dir=tmp_path).metrics_public is False


# --- several processes (Gunicorn's workers) ----------------------------------------------

WORKER = textwrap.dedent("""
    import sys
    from api.observability import metrics
    from api.observability.job_metrics import JobMetrics
    from runner.catalog import CommandCatalog
    from tests.unit.api.observability.test_metrics import record
    from runner.lifecycle import ExitReason, JobStatus

    runs, streams = int(sys.argv[1]), int(sys.argv[2])
    job_metrics = JobMetrics(CommandCatalog({}), sync_slots=3)
    for _ in range(runs):
        job_metrics.finished(record("s", "c", status=JobStatus.SUCCEEDED,
                                    reason=ExitReason.COMPLETED))
    for _ in range(streams):
        metrics.stream_opened("events")
    print("ok")
""")
READ = "import sys; from api.observability.exposition import render; print(render(None).decode())"


def _python(code: str, folder: Path, *args: str) -> subprocess.Popen[str]:
    """A process of its own, as a Gunicorn worker is, writing to `folder`."""
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, text=True,
                            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)},
                            stdout=subprocess.PIPE)  # fmt: skip


def _scrape(folder: Path) -> bytes:
    reader = _python(READ, folder)
    out, _ = reader.communicate(timeout=120)
    assert reader.returncode == 0
    return out.encode()


def test_workers_add_up_and_a_dead_workers_gauges_go(tmp_path: Path) -> None:
    """Two processes as Gunicorn's workers: their counters add up; once one is marked
    dead (Gunicorn's child_exit) its open streams no longer count, its runs still do."""
    from api.observability.multiprocess import MULTIPROC_ENV, mark_dead

    folder = tmp_path / "metrics"
    folder.mkdir()
    first = _python(WORKER + "sys.stdout.flush(); __import__('time').sleep(300)", folder, "3", "2")
    second = _python(WORKER, folder, "4", "1")
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "ok"
        assert second.communicate(timeout=120)[0].strip() == "ok"
        text = _scrape(folder)
        done = {"stage": "other", "command": "other", "mode": "sync", "status": "succeeded",
                "reason": "Completed"}  # fmt: skip
        assert value(text, "zyra_jobs_finished_total", **done) == 3 + 4
        assert value(text, "zyra_streams_open", kind="events") == 2 + 1
        assert value(text, "zyra_sync_slots") == 3 + 3
        os.environ[MULTIPROC_ENV] = str(folder)
        try:
            mark_dead(second.pid)  # what child_exit does when Gunicorn reaps it
        finally:
            del os.environ[MULTIPROC_ENV]
        text = _scrape(folder)
        assert value(text, "zyra_jobs_finished_total", **done) == 3 + 4
        assert value(text, "zyra_streams_open", kind="events") == 2
        assert value(text, "zyra_sync_slots") == 3
    finally:
        first.kill()
        first.wait()
