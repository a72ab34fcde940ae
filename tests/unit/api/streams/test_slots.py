"""Stream slots: at most ZYRA_MAX_STREAMS in all, ZYRA_MAX_STREAMS_PER_PRINCIPAL each."""

from __future__ import annotations

import json

import pytest

from api.streams.slots import StreamRefusedError, StreamSlots


def test_a_principal_gets_its_share_then_a_refusal_naming_the_setting() -> None:
    slots = StreamSlots(total=10, per_principal=2)
    slots.take("key:alice"), slots.take("key:alice")
    with pytest.raises(StreamRefusedError) as refused:
        slots.take("key:alice")
    assert refused.value.limit == "ZYRA_MAX_STREAMS_PER_PRINCIPAL"
    assert "ZYRA_MAX_STREAMS_PER_PRINCIPAL=2" in refused.value.detail
    assert len(refused.value.detail.encode()) <= 123  # a WebSocket close reason
    slots.take("key:bob")  # others are not held back
    assert (slots.open, slots.held_by("key:alice")) == (3, 2)


def test_the_process_keeps_at_most_its_total() -> None:
    slots = StreamSlots(total=2, per_principal=5)
    slots.take("key:alice"), slots.take("key:bob")
    with pytest.raises(StreamRefusedError) as refused:
        slots.take("key:carol")
    assert refused.value.limit == "ZYRA_MAX_STREAMS"
    assert "ZYRA_MAX_STREAMS=2" in refused.value.detail


def test_a_released_slot_is_free_again_and_releasing_twice_changes_nothing() -> None:
    slots = StreamSlots(total=1, per_principal=1)
    slot = slots.take("key:alice")
    slot.release()
    slot.release()
    assert (slots.open, slots.held_by("key:alice")) == (0, 0)
    slots.take("key:bob")
    with pytest.raises(StreamRefusedError):
        slots.take("key:alice")


def test_zero_means_no_limit() -> None:
    slots = StreamSlots(total=0, per_principal=0)
    for _ in range(1000):
        slots.take("key:alice")
    assert slots.open == 1000


def test_the_refusal_is_a_503_with_retry_after_and_the_limit() -> None:
    refusal = StreamRefusedError("ZYRA_MAX_STREAMS", "too many").response()
    assert refusal.status_code == 503
    assert int(refusal.headers["Retry-After"]) > 0
    assert json.loads(refusal.body) == {"detail": "too many", "limit": "ZYRA_MAX_STREAMS"}
