"""The fair-share queue on both stores: claims in order, up to the cap, by the job's
dispatch group only, atomic across processes; withdraw and put back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from api.limits.fair_share import (
    FairShareQueue,
    QueuedJob,
    RedisFairShareQueue,
    SqliteFairShareQueue,
)
from tests.services import RedisServer


@pytest.fixture(params=["sqlite", "redis"])
def queue(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> Iterator[FairShareQueue]:
    if request.param == "sqlite":
        yield SqliteFairShareQueue(tmp_path / "fair_share.sqlite3")
    else:
        yield RedisFairShareQueue(redis_server.url, prefix=f"t{uuid.uuid4().hex}")


def ids(jobs: list[QueuedJob]) -> list[str]:
    return [j.job_id for j in jobs]


def test_claims_follow_submission_order_up_to_the_cap(queue: FairShareQueue) -> None:
    for n in range(4):
        queue.enqueue("key:bob", f"b{n}", "g", f'{{"n": {n}}}')
    queue.enqueue("key:alice", "a0", "g", "{}")
    assert ids(queue.claim("key:bob", "g", 2)) == ["b0", "b1"]
    assert queue.claim("key:bob", "g", 2) == []  # at its cap
    assert ids(queue.claim("key:alice", "g", 2)) == ["a0"]  # bob's queue holds no one back
    assert queue.running("key:bob") == {"b0", "b1"}
    queue.release("key:bob", "b0")
    [job] = queue.claim("key:bob", "g", 2)
    assert (job.job_id, job.spec) == ("b2", '{"n": 2}')
    assert queue.waiting_owners() == {"key:bob"}
    assert queue.waiting_jobs() == {"b3"}


def test_no_cap_claims_everything(queue: FairShareQueue) -> None:
    for n in range(3):
        queue.enqueue("key:bob", f"b{n}", "g", "{}")
    assert ids(queue.claim("key:bob", "g", 0)) == ["b0", "b1", "b2"]
    assert queue.waiting_owners() == set()


def test_the_head_waits_for_a_process_of_its_group(queue: FairShareQueue) -> None:
    queue.enqueue("key:bob", "b0", "here", "{}")
    queue.enqueue("key:bob", "b1", "there", "{}")
    queue.enqueue("key:bob", "b2", "here", "{}")
    assert ids(queue.claim("key:bob", "here", 5)) == ["b0"]
    assert queue.claim("key:bob", "here", 5) == []  # b2 stays behind b1: order is kept
    assert ids(queue.claim("key:bob", "there", 5)) == ["b1"]
    assert ids(queue.claim("key:bob", "here", 5)) == ["b2"]


def test_withdraw_and_put_back(queue: FairShareQueue) -> None:
    for n in range(3):
        queue.enqueue("key:bob", f"b{n}", "g", f"s{n}")
    assert queue.withdraw("key:bob", "b1") is True
    assert queue.withdraw("key:bob", "b1") is False
    claimed = queue.claim("key:bob", "g", 2)
    assert ids(claimed) == ["b0", "b2"]
    assert queue.withdraw("key:bob", "b0") is False  # claimed: no longer waiting
    queue.enqueue("key:bob", "b3", "g", "s3")
    queue.put_back("key:bob", "g", claimed)  # the backend could not take them
    assert queue.running("key:bob") == set()
    assert [(j.job_id, j.spec) for j in queue.claim("key:bob", "g", 0)] == [
        ("b0", "s0"), ("b2", "s2"), ("b3", "s3")
    ]  # fmt: skip


def test_concurrent_claims_never_exceed_the_cap(queue: FairShareQueue) -> None:
    for n in range(20):
        queue.enqueue("key:bob", f"b{n}", "g", "{}")
    with ThreadPoolExecutor(8) as pool:
        claimed = [j for batch in pool.map(lambda _: queue.claim("key:bob", "g", 3), range(16))
                   for j in batch]  # fmt: skip
    assert sorted(ids(claimed)) == ["b0", "b1", "b2"]
