"""A cap on one principal's sync runs executing at once, in this process or in Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from api.limits.errors import LimitExceededError
from api.limits.rates import LimitName
from api.limits.sync_slots import LocalSyncRunSlots, RedisSyncRunSlots, SyncRunSlots
from tests.services import RedisServer


@pytest.fixture(params=["local", "redis"])
def slots(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[SyncRunSlots]:
    if request.param == "local":
        yield LocalSyncRunSlots(cap=2)
    else:
        yield RedisSyncRunSlots(redis_server.url, cap=2, prefix=f"t{uuid.uuid4().hex}")


def test_beyond_the_cap_is_refused_with_when_to_retry(slots: SyncRunSlots) -> None:
    first = slots.acquire("key:bob", 30)
    slots.acquire("key:bob", 10)
    with pytest.raises(LimitExceededError) as refused:
        slots.acquire("key:bob", 30)
    assert refused.value.limit is LimitName.CONCURRENT_SYNC_RUNS
    assert 9 <= refused.value.retry_after_s <= 10  # when the first must have ended
    assert slots.acquire("key:alice", 30) is not None  # someone else's cap
    slots.release("key:bob", first)
    assert slots.acquire("key:bob", 30) is not None


def test_a_renewed_lease_counts_from_its_start(slots: SyncRunSlots) -> None:
    lease = slots.acquire("key:bob", 5)
    slots.acquire("key:bob", 60)
    slots.renew("key:bob", lease, 40)  # it waited for a process-wide slot, then started
    with pytest.raises(LimitExceededError) as refused:
        slots.acquire("key:bob", 30)
    assert 39 <= refused.value.retry_after_s <= 40


def test_cap_zero_takes_no_lease() -> None:
    slots = LocalSyncRunSlots(cap=0)
    assert [slots.acquire("key:bob", 30) for _ in range(5)] == [None] * 5
