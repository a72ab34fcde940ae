"""Both event logs: dense per-job seq, reads after a seq, blocking waits, results."""

from __future__ import annotations

import json
import threading

import pytest

from runner.dependencies import DependencyUnavailableError
from runner.events import (
    EventLog,
    RedisEventLog,
    RunnerResult,
)
from runner.lifecycle import ExitReason, JobStatus
from runner.outputs import OutputFile
from tests.services import free_port


def test_seq_counts_from_one_per_job(log: EventLog) -> None:
    assert [log.append("a", stdout=f"{i}\n").seq for i in range(3)] == [1, 2, 3]
    assert log.append("b", status="queued").seq == 1
    assert [e.stdout for e in log.read("a")] == ["0\n", "1\n", "2\n"]
    assert [e.seq for e in log.read("a", after=2)] == [3]
    assert log.read("unknown") == []


def test_concurrent_writers_get_dense_unique_seqs(log: EventLog) -> None:
    def write(n: int) -> None:
        for i in range(50):
            log.append("job", stderr=f"{n}:{i}\n")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = log.read("job", limit=1000)
    assert [e.seq for e in events] == list(range(1, 201))
    for n in range(4):  # each writer's own order is kept
        mine = [e.stderr for e in events if e.stderr and e.stderr.startswith(f"{n}:")]
        assert mine == [f"{n}:{i}\n" for i in range(50)]


def test_runner_result_is_kept_beside_the_events(log: EventLog) -> None:
    assert log.get_result("r") is None
    result = RunnerResult(
        exit_code=3, reason="Error", duration_s=0.5,
        outputs=[OutputFile(name="a.png", size=1, sha256="0" * 64)],
    )  # fmt: skip
    log.set_result("r", result)
    assert log.get_result("r") == result


def test_terminal_status_is_flagged(log: EventLog) -> None:
    assert not log.append("t", status="running").is_terminal
    event = log.append("t", status="failed", exit_code=2)
    assert event.is_terminal
    assert event.message() == {"seq": 2, "ts": event.ts, "status": "failed", "exit_code": 2}


def test_events_read_back_in_the_vocabulary_and_their_messages_are_unchanged(
    log: EventLog,
) -> None:
    log.append("v", status="failed", exit_code=2, reason="Error", ts=1.5)
    [event] = log.read("v")
    assert event.status is JobStatus.FAILED and event.reason is ExitReason.ERROR
    assert json.dumps(event.message()) == (
        '{"seq": 1, "ts": 1.5, "status": "failed", "exit_code": 2, "reason": "Error"}'
    )


def test_redis_down_is_named() -> None:
    log = RedisEventLog(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(DependencyUnavailableError) as err:
        log.append("x", stdout="a\n")
    assert err.value.dependency == "Redis"
