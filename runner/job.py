"""One job's routine, the same for a sync run in the API and an async run in a runner:
stage its inputs, run its command confined, publish the output as events, keep its
outputs, store the result beside the events.

The caller supplies what differs: the executor (the API's template process, or a
fork in the runner), the event log and storage it may reach, and whether the
command's uid shares the folders through a group (the sync-executor container).
Whoever finalises the job (api/jobs/service.py) reads the result and the events the
same way for both.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner import progress, tracing
from runner.dependencies import DependencyUnavailableError
from runner.events import EventLog, RunnerResult
from runner.execute import CommandExecutor
from runner.inputs import stage_inputs
from runner.lean_template import BLAS_THREAD_VARIABLES, usable_cpus
from runner.lifecycle import ExitReason, JobStatus
from runner.outputs import keep_outputs
from runner.publish import OutputPublisher
from runner.sandbox import SANDBOX_EXIT_CODE, SandboxReport, SandboxUnavailableError, require
from runner.spec import JobSpec
from runner.storage import RunnerStorage, results_prefix
from runner.workspace import JobFolders

INPUT_MISSING_EXIT_CODE = 1
logger = logging.getLogger("zyra.runner")
# What the command may write stays readable (and removable) by the folders' group.
SHARED_UMASK = 0o007


def default_command_env(cpus: int | None = None) -> dict[str, str]:
    """What a command needs when the spec does not say: in a pod, the image's PATH, and
    BLAS thread pools as large as the CPUs the pod may use (`cpus`, by default read from
    its cgroup): OpenBLAS would start a thread per core of the node, whatever the pod's
    CPU limit, and they would spin against the limit. A command forked from a template
    process has numpy loaded already, with one thread (runner/lean_template.py)."""
    threads = str(cpus or usable_cpus())
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "MPLBACKEND": "Agg",
        **dict.fromkeys(BLAS_THREAD_VARIABLES, threads),
    }


@dataclass(frozen=True)
class JobPlace:
    """Where a job runs and what it may reach."""

    log: EventLog
    storage: RunnerStorage
    executor: CommandExecutor
    sandbox: SandboxReport | None  # None: the template process has not said yet
    # The command runs as another uid that shares the job's folders through their
    # group (the sync-executor container), rather than being handed them.
    shared_folders: bool = False
    echo: bool = True  # also write the output to this process's stdout/stderr
    flush_wait_s: float = 60.0  # how long to wait at the end for an unreachable log
    # How the job's folders go once it has ended: at once, or (the API's sync runs)
    # after the answer (runner/folder_removal.py).
    remove_folders: Callable[[JobFolders], None] = JobFolders.remove


def store_result(log: EventLog, job_id: str, result: RunnerResult) -> None:
    """Store the result; an unreachable log must not change the outcome (the API then
    reads it from the runner's exit and the output from its own log)."""
    try:
        log.set_result(job_id, result)
    except DependencyUnavailableError as exc:
        logger.warning("could not store the result: %s", exc)


def run_job(spec: JobSpec, place: JobPlace, cancel: threading.Event | None = None) -> RunnerResult:
    """Run the job to its end; its result (also stored beside its events).
    ExecutorUnavailableError when the template process cannot take the command."""
    folders = JobFolders(Path(spec.work_root))
    folders.create()
    publisher = OutputPublisher(place.log, spec.job_id, echo=place.echo, secrets=spec.secrets)
    try:
        return _run(spec, place, folders, publisher, cancel)
    finally:
        place.remove_folders(folders)


def _run(
    spec: JobSpec,
    place: JobPlace,
    folders: JobFolders,
    publisher: OutputPublisher,
    cancel: threading.Event | None,
) -> RunnerResult:
    try:
        if place.sandbox is not None:
            require(place.sandbox)
    except SandboxUnavailableError as exc:
        reason = ExitReason.SANDBOX_UNAVAILABLE
        return _end_early(spec, place, publisher, SANDBOX_EXIT_CODE, reason, str(exc))
    try:
        with tracing.span("job.inputs", {"zyra.inputs": len(spec.inputs)}):
            staged = stage_inputs(place.storage, spec.inputs, folders.files)
    except KeyError as exc:
        # The upload expired (or was deleted) between the request and now.
        why = f"uploaded file {exc.args[0]} is no longer stored"
        reason = ExitReason.INPUT_MISSING
        return _end_early(spec, place, publisher, INPUT_MISSING_EXIT_CODE, reason, why)
    sandbox_policy = spec.sandbox
    if place.shared_folders:
        folders.share_with_group()
        sandbox_policy = sandbox_policy.model_copy(update={"umask": SHARED_UMASK})
    elif place.sandbox is not None:
        folders.hand_over(place.sandbox)
    publisher.set_progress(progress.INPUTS_FETCHED)
    publisher.emit(status=JobStatus.RUNNING, progress=progress.RUNNING)
    publisher.progress = progress.RUNNING
    request = folders.child_request(
        spec.argv,
        {**default_command_env(), **spec.env},
        limits=spec.limits,
        sandbox=sandbox_policy,
        outbound_allow=spec.outbound_allow,
    )
    with tracing.span("job.command", {"zyra.argv0": spec.argv[0] if spec.argv else ""}) as span:
        outcome = place.executor.run(
            request,
            capture_dir=folders.capture,
            timeout_s=spec.timeout_s,
            on_output=publisher.output,
            cancel=cancel,
            quotas=spec.quotas,
        )
        if span is not None:
            span.set_attributes({"zyra.exit_code": outcome.exit_code,
                                 "zyra.reason": str(outcome.reason)})  # fmt: skip
    publisher.set_progress(progress.COMMAND_DONE)
    with tracing.span("job.outputs") as span:
        outputs = [] if outcome.over_quota else keep_outputs(
            folders.files, place.storage, results_prefix(spec.job_id), staged,
            outcome.stdout_path, publisher.stdout_binary,
        )  # fmt: skip
        if span is not None:
            span.set_attribute("zyra.outputs", len(outputs))
    publisher.set_progress(progress.OUTPUTS_STORED)
    result = RunnerResult(
        exit_code=outcome.exit_code,
        reason=outcome.reason,
        duration_s=outcome.duration_s,
        outputs=outputs,
        stdout_is_binary=publisher.stdout_binary,
    )
    with tracing.span("job.events.publish"):  # what is left of the output, then the result
        publisher.close(place.flush_wait_s)
        store_result(place.log, spec.job_id, result)
    return result


def _end_early(
    spec: JobSpec,
    place: JobPlace,
    publisher: OutputPublisher,
    code: int,
    reason: ExitReason,
    why: str,
) -> RunnerResult:
    """End the job before its command ran, saying why."""
    publisher.emit(stderr=why + "\n")
    publisher.close(place.flush_wait_s)
    result = RunnerResult(exit_code=code, reason=reason, duration_s=0.0, outputs=[])
    store_result(place.log, spec.job_id, result)
    return result
