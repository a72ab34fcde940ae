"""runner/job.py: a result the event log cannot take is a warning line, not a crash."""

from __future__ import annotations

import pytest

from runner.dependencies import DependencyUnavailableError
from runner.events import RunnerResult
from runner.job import store_result
from runner.lifecycle import ExitReason


class DownLog:
    def set_result(self, job_id: str, result: RunnerResult) -> None:
        raise DependencyUnavailableError("Redis", ConnectionError("refused"))


def test_an_unstorable_result_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    result = RunnerResult(exit_code=0, reason=ExitReason.COMPLETED, duration_s=0.1, outputs=[])
    store_result(DownLog(), "j1", result)  # type: ignore[arg-type]
    [record] = caplog.records
    assert (record.name, record.levelname) == ("zyra.runner", "WARNING")
    assert record.getMessage() == "could not store the result: Redis is unavailable: refused"
