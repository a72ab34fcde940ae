"""How an async job ends: what the backend observed, what the runner stored, whether
its owner cancelled it → (status, exit code, reason). One row per case."""

from __future__ import annotations

import pytest

from api.backends.base import RunnerExit
from api.jobs.finalisation import Ending, decide_ending
from runner.events import RunnerResult
from runner.lifecycle import ExitReason as R
from runner.lifecycle import JobStatus as S


def stored(exit_code: int, reason: R) -> RunnerResult:
    return RunnerResult(exit_code=exit_code, reason=reason, duration_s=1.0, outputs=[])


def overriding(exit_code: int | None, reason: R) -> RunnerExit:
    """The cluster (or the service) ended the runner: its outcome wins over the runner's."""
    return RunnerExit(exit_code, reason, overrides_result=True)


# (observed by the backend, stored by the runner) → ending, without and with a cancel.
ROWS: dict[str, tuple[RunnerExit, RunnerResult | None, Ending, Ending]] = {
    # The runner stored its result: it is the truth.
    "result 0": (
        RunnerExit(0, R.COMPLETED), stored(0, R.COMPLETED),
        Ending(S.SUCCEEDED, 0, R.COMPLETED), Ending(S.CANCELLED, 0, R.CANCELLED),
    ),
    "result nonzero": (
        RunnerExit(2, R.ERROR), stored(2, R.ERROR),
        Ending(S.FAILED, 2, R.ERROR), Ending(S.CANCELLED, 2, R.CANCELLED),
    ),
    "result timeout 124": (
        RunnerExit(124, R.ERROR), stored(124, R.TIMEOUT),
        Ending(S.FAILED, 124, R.TIMEOUT), Ending(S.CANCELLED, 124, R.CANCELLED),
    ),
    "result signal 128+N": (
        RunnerExit(137, R.ERROR), stored(137, R.SIGNALED),
        Ending(S.FAILED, 137, R.SIGNALED), Ending(S.CANCELLED, 137, R.CANCELLED),
    ),
    "result after SIGTERM of a cancel": (
        RunnerExit(143, R.ERROR), stored(143, R.CANCELLED),
        Ending(S.FAILED, 143, R.CANCELLED), Ending(S.CANCELLED, 143, R.CANCELLED),
    ),
    "result over a quota": (
        RunnerExit(137, R.ERROR), stored(137, R.DISK_QUOTA),
        Ending(S.FAILED, 137, R.DISK_QUOTA), Ending(S.CANCELLED, 137, R.CANCELLED),
    ),
    "result sandbox unavailable": (
        RunnerExit(126, R.ERROR), stored(126, R.SANDBOX_UNAVAILABLE),
        Ending(S.FAILED, 126, R.SANDBOX_UNAVAILABLE), Ending(S.CANCELLED, 126, R.CANCELLED),
    ),
    "result input missing": (
        RunnerExit(1, R.ERROR), stored(1, R.INPUT_MISSING),
        Ending(S.FAILED, 1, R.INPUT_MISSING), Ending(S.CANCELLED, 1, R.CANCELLED),
    ),
    "runner gone after storing its result": (
        RunnerExit(None, R.LOST), stored(0, R.COMPLETED),
        Ending(S.SUCCEEDED, 0, R.COMPLETED), Ending(S.CANCELLED, 0, R.CANCELLED),
    ),
    # No result (the runner could not reach the log): what the backend saw.
    "no result, exit 0": (
        RunnerExit(0, R.COMPLETED), None,
        Ending(S.SUCCEEDED, 0, R.COMPLETED), Ending(S.CANCELLED, 0, R.CANCELLED),
    ),
    "no result, exit nonzero": (
        RunnerExit(3, R.ERROR), None,
        Ending(S.FAILED, 3, R.ERROR), Ending(S.CANCELLED, 3, R.CANCELLED),
    ),
    "no result, exit 124 (a code alone cannot tell a timeout)": (
        RunnerExit(124, R.ERROR), None,
        Ending(S.FAILED, 124, R.ERROR), Ending(S.CANCELLED, 124, R.CANCELLED),
    ),
    "no result, runner killed by a signal": (
        RunnerExit(137, R.SIGNALED), None,
        Ending(S.FAILED, 137, R.SIGNALED), Ending(S.CANCELLED, 137, R.CANCELLED),
    ),
    # No result, no exit code.
    "runner lost": (
        RunnerExit(None, R.LOST), None,
        Ending(S.FAILED, None, R.LOST), Ending(S.CANCELLED, None, R.CANCELLED),
    ),
    "withdrawn before it started": (
        RunnerExit(None, R.CANCELLED), None,
        Ending(S.FAILED, None, R.LOST), Ending(S.CANCELLED, None, R.CANCELLED),
    ),
    # The cluster ended it, with an exit code: that code and the cluster's reason.
    "OOMKilled": (
        overriding(137, R.OOM_KILLED), None,
        Ending(S.FAILED, 137, R.OOM_KILLED), Ending(S.CANCELLED, 137, R.CANCELLED),
    ),
    "OOMKilled after the runner stored a result": (
        overriding(137, R.OOM_KILLED), stored(0, R.COMPLETED),
        Ending(S.FAILED, 137, R.OOM_KILLED), Ending(S.CANCELLED, 137, R.CANCELLED),
    ),
    "DeadlineExceeded, container terminated": (
        overriding(143, R.DEADLINE_EXCEEDED), stored(143, R.CANCELLED),
        Ending(S.FAILED, 143, R.DEADLINE_EXCEEDED), Ending(S.CANCELLED, 143, R.CANCELLED),
    ),
    # Without an exit code: the runner's stored code, if any, and the cluster's reason.
    "DeadlineExceeded, pod gone, result stored": (
        overriding(None, R.DEADLINE_EXCEEDED), stored(143, R.CANCELLED),
        Ending(S.FAILED, 143, R.DEADLINE_EXCEEDED), Ending(S.CANCELLED, 143, R.CANCELLED),
    ),
    "DeadlineExceeded, pod gone, nothing stored": (
        overriding(None, R.DEADLINE_EXCEEDED), None,
        Ending(S.FAILED, None, R.DEADLINE_EXCEEDED), Ending(S.CANCELLED, None, R.CANCELLED),
    ),
    # Was `succeeded` with reason DeadlineExceeded: the cluster's outcome wins, so failed.
    "DeadlineExceeded just after the command succeeded": (
        overriding(None, R.DEADLINE_EXCEEDED), stored(0, R.COMPLETED),
        Ending(S.FAILED, 0, R.DEADLINE_EXCEEDED), Ending(S.CANCELLED, 0, R.CANCELLED),
    ),
    "ImagePullBackOff": (
        overriding(None, R.IMAGE_PULL_BACK_OFF), None,
        Ending(S.FAILED, None, R.IMAGE_PULL_BACK_OFF), Ending(S.CANCELLED, None, R.CANCELLED),
    ),
    "CreateContainerConfigError": (
        overriding(None, R.CREATE_CONTAINER_CONFIG_ERROR), None,
        Ending(S.FAILED, None, R.CREATE_CONTAINER_CONFIG_ERROR),
        Ending(S.CANCELLED, None, R.CANCELLED),
    ),
    "sync run abandoned by the service, nothing stored": (
        overriding(None, R.LOST), None,
        Ending(S.FAILED, None, R.LOST), Ending(S.CANCELLED, None, R.CANCELLED),
    ),
    "sync run abandoned by the service after its command ended": (
        overriding(None, R.LOST), stored(0, R.COMPLETED),
        Ending(S.FAILED, 0, R.LOST), Ending(S.CANCELLED, 0, R.CANCELLED),
    ),
    "LaunchFailed": (
        overriding(None, R.LAUNCH_FAILED), None,
        Ending(S.FAILED, None, R.LAUNCH_FAILED), Ending(S.CANCELLED, None, R.CANCELLED),
    ),
}  # fmt: skip


@pytest.mark.parametrize(("observed", "result", "ending", "_"), ROWS.values(), ids=ROWS)
def test_how_a_job_ends(
    observed: RunnerExit, result: RunnerResult | None, ending: Ending, _: Ending
) -> None:
    assert decide_ending(observed, result, cancel_requested=False) == ending


@pytest.mark.parametrize(("observed", "result", "_", "ending"), ROWS.values(), ids=ROWS)
def test_how_a_cancelled_job_ends(
    observed: RunnerExit, result: RunnerResult | None, _: Ending, ending: Ending
) -> None:
    assert decide_ending(observed, result, cancel_requested=True) == ending
