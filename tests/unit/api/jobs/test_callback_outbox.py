"""When a callback is tried again, and where its delivery stands after each attempt,
with each real store (tests/unit/api/jobs/conftest.py) and a real receiver on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from api.jobs.callback_outbox import CallbackOutbox, RetryRules
from api.jobs.callbacks import Answer
from api.jobs.records import (
    CallbackDelivery,
    CallbackTarget,
    DeliveryState,
    JobRecord,
    RunMode,
    utcnow,
)
from api.jobs.store import JobStore
from runner.lifecycle import JobStatus
from runner.outbound import OutboundPolicy
from tests.unit.api.jobs.test_callbacks import Receiver, start_receiver

RULES = RetryRules(window_s=900, not_found_window_s=120, max_backoff_s=60)


@pytest.mark.parametrize(
    ("answer", "attempts", "ended_s_ago", "delay"),
    [
        (Answer(status=204), 1, 0, None),  # delivered
        (Answer(error="refused", refused=True), 1, 0, None),  # a destination refused
        (Answer(error="ConnectError"), 1, 0, 1.0),  # no answer: 1, 2, 4 … s
        (Answer(error="ConnectError"), 3, 10, 4.0),
        (Answer(error="ConnectError"), 12, 100, 60.0),  # capped
        (Answer(status=503), 2, 0, 2.0),
        (Answer(status=409), 1, 0, 1.0),  # n8n: not yet at its Wait node
        (Answer(status=408), 1, 0, 1.0),
        (Answer(status=425), 1, 0, 1.0),
        (Answer(status=429, retry_after_s=30), 1, 0, 30.0),  # Retry-After honoured …
        (Answer(status=503, retry_after_s=3600), 1, 0, 60.0),  # … up to the cap
        (Answer(status=404), 1, 119, 1.0),  # not listening yet: retried for a while
        (Answer(status=404), 1, 120, None),  # then final
        (Answer(status=400), 1, 0, None),
        (Answer(status=401), 1, 0, None),
        (Answer(status=302), 1, 0, None),
        (Answer(error="ConnectError"), 9, 880, 20.0),  # the last try at the window's end
        (Answer(error="ConnectError"), 10, 900, None),  # the window has passed
    ],
)
def test_what_is_retried_and_when(
    answer: Answer, attempts: int, ended_s_ago: float, delay: float | None
) -> None:
    assert RULES.next_delay(answer, attempts, ended_s_ago) == delay


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = start_receiver()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


def ended_job(store: JobStore, url: str, **callback: object) -> JobRecord:
    now = utcnow()
    record = JobRecord(
        job_id="a" * 32, mode=RunMode.ASYNC, stage="visualize", command="heatmap",
        args={"token": "x"}, submitted_by="alice", status=JobStatus.SUCCEEDED, exit_code=0,
        finished_at=now, callback_target=CallbackTarget(url=url, **callback),  # type: ignore[arg-type]
        callback=CallbackDelivery(),
    )  # fmt: skip
    store.save(record)
    return record


def outbox(store: JobStore) -> CallbackOutbox:
    policy = OutboundPolicy.from_entries(["127.0.0.1"])
    return CallbackOutbox(store, policy, RULES, 5, lambda r: r.model_dump_json().encode())


def test_each_attempt_is_recorded_and_a_2xx_ends_delivery(
    store: JobStore, receiver: Receiver
) -> None:
    job = ended_job(store, f"http://127.0.0.1:{receiver.port}/hook")
    receiver.answers = [(409, None)]
    sender = outbox(store)
    first = sender.attempt(job.job_id)
    assert first is not None and first.state is DeliveryState.PENDING
    assert (first.attempts, first.last_status, first.last_error) == (1, 409, "HTTP 409")
    assert first.next_attempt_at is not None
    second = sender.attempt(job.job_id)
    assert second is not None and second.state is DeliveryState.DELIVERED
    assert (second.attempts, second.last_status, second.last_error) == (2, 204, None)
    stored = store.get(job.job_id)
    assert stored is not None and stored.callback == second
    assert stored.callback_claimed_until is None
    # The body says which attempt it is, and how the one before went.
    bodies = [seen["body"] for seen in receiver.seen]
    assert [b["callback"]["attempts"] for b in bodies] == [1, 2]
    assert bodies[1]["callback"]["last_status"] == 409
    # Delivered: nothing more is sent.
    assert sender.attempt(job.job_id) is None
    assert len(receiver.seen) == 2


def test_a_claimed_callback_is_not_attempted_by_another_process(
    store: JobStore, receiver: Receiver
) -> None:
    job = ended_job(store, f"http://127.0.0.1:{receiver.port}/hook")
    claimed = job.model_copy(update={"callback_claimed_until": utcnow() + timedelta(seconds=30)})
    store.save(claimed)
    assert outbox(store).attempt(job.job_id) is None
    assert receiver.seen == []
    # A claim that ran out (its process died mid-attempt) no longer holds.
    store.save(job.model_copy(update={"callback_claimed_until": utcnow() - timedelta(seconds=1)}))
    delivery = outbox(store).attempt(job.job_id)
    assert delivery is not None and delivery.state is DeliveryState.DELIVERED


def test_resume_schedules_only_pending_callbacks(store: JobStore, receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.port}/hook"
    pending = ended_job(store, url)
    done = pending.model_copy(
        update={"job_id": "b" * 32, "callback": CallbackDelivery(state=DeliveryState.DELIVERED)}
    )
    store.save(done)
    sender = outbox(store)
    assert sender.resume() == 1
    sender.start()
    try:
        receiver_seen = wait_for(receiver, 1)
    finally:
        sender.stop()
    assert [seen["body"]["job_id"] for seen in receiver_seen] == [pending.job_id]


def wait_for(receiver: Receiver, count: int, timeout_s: float = 10) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while len(receiver.seen) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return receiver.seen
