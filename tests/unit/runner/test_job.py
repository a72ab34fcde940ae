"""runner/job.py: a result the event log cannot take is a warning line, not a crash."""

from __future__ import annotations

import pytest

from runner.dependencies import DependencyUnavailableError
from runner.events import RunnerResult
from runner.job import default_command_env, store_result
from runner.lean_template import BLAS_THREAD_VARIABLES, usable_cpus
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


@pytest.mark.parametrize("cpus", [1, 3])
def test_a_commands_blas_pools_are_as_large_as_the_cpus_it_may_use(cpus: int) -> None:
    env = default_command_env(cpus)
    assert [env[name] for name in BLAS_THREAD_VARIABLES] == [str(cpus)] * 3
    assert env["MPLBACKEND"] == "Agg"


def test_by_default_the_blas_pools_follow_this_processs_cpu_quota() -> None:
    env = default_command_env()
    assert env["OPENBLAS_NUM_THREADS"] == str(usable_cpus())
