"""How a job ends: its status, exit code and reason, from what was seen of its end.

A pure decision (tests/unit/api/jobs/test_finalisation.py has one row per case);
`JobService._final_record` builds the final record around it.
"""

from __future__ import annotations

from typing import NamedTuple

from api.backends.base import RunnerExit
from runner.events import RunnerResult
from runner.lifecycle import ExitReason, JobStatus


class Ending(NamedTuple):
    status: JobStatus
    exit_code: int | None
    reason: ExitReason


def decide_ending(
    observed: RunnerExit, result: RunnerResult | None, cancel_requested: bool
) -> Ending:
    """`observed`: what the backend saw of the runner's end; `result`: what the runner
    stored, if it could; `cancel_requested`: the owner cancelled the job."""
    if observed.overrides_result:
        # The cluster (or the service) ended the runner: its reason wins; the runner's
        # stored code stands in for one it did not see.
        exit_code = observed.exit_code
        if exit_code is None and result is not None:
            exit_code = result.exit_code
        reason = observed.reason
    elif result is not None:  # the runner's own account is the truth
        exit_code, reason = result.exit_code, result.reason
    else:
        exit_code = observed.exit_code
        # No exit code and no result: nothing says how it ended.
        reason = observed.reason if exit_code is not None else ExitReason.LOST
    if cancel_requested:
        return Ending(JobStatus.CANCELLED, exit_code, ExitReason.CANCELLED)
    # An overriding end is a failure even if the command had exited 0 before it.
    succeeded = exit_code == 0 and not observed.overrides_result
    return Ending(JobStatus.SUCCEEDED if succeeded else JobStatus.FAILED, exit_code, reason)
