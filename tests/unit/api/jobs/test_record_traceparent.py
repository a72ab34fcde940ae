"""A job's trace context is kept by both stores (its runner and its end join the
trace later, maybe in another API process) and never shown to clients."""

from __future__ import annotations

from api.jobs.records import JobRecord, RunMode
from api.jobs.store import JobStore
from api.schemas import JobView
from runner.lifecycle import JobStatus

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def record(**kw: object) -> JobRecord:
    return JobRecord(job_id="a" * 32, mode=RunMode.ASYNC, stage="visualize", command="heatmap",
                     args={}, submitted_by="t", **kw)  # fmt: skip


def test_both_stores_keep_it(store: JobStore) -> None:
    store.save(record(traceparent=TRACEPARENT))
    assert store.get("a" * 32).traceparent == TRACEPARENT  # type: ignore[union-attr]
    final = record(traceparent=TRACEPARENT, status=JobStatus.SUCCEEDED)
    assert store.save_unless_terminal(final)
    assert store.get("a" * 32).traceparent == TRACEPARENT  # type: ignore[union-attr]


def test_records_from_before_have_none() -> None:
    stored = record().model_dump(mode="json")
    del stored["traceparent"]
    assert JobRecord.model_validate(stored).traceparent is None


def test_clients_never_see_it() -> None:
    view = JobView.from_record(record(traceparent=TRACEPARENT))
    assert TRACEPARENT not in view.model_dump_json()
