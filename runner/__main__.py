"""`python -m runner [--spec FILE]`: execute one job, the way a runner pod does.

Reads the job spec, runs the command in a forked child (same isolation and
sandbox as a sync run), publishes its output as events and echoes it, collects
outputs, stores the result beside the events, and exits with the command's exit
code. SIGTERM cancels: the command's process group gets SIGTERM, then SIGKILL
after the grace period. The runner is a subreaper: nothing the command started
outlives it. With `ZYRA_SANDBOX=required` (in the spec) on a machine that cannot
confine commands, the job fails with reason SandboxUnavailable and nothing runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from runner import progress
from runner.credentials import credentials_from_env
from runner.dependencies import DependencyUnavailableError
from runner.events import EventLog, RunnerResult, event_log_from
from runner.execute import CommandExecutor, ForkSpawner
from runner.inputs import stage_inputs
from runner.outputs import keep_outputs
from runner.presigned import PresignedStorage
from runner.publish import OutputPublisher
from runner.reaper import become_subreaper
from runner.sandbox import (
    SANDBOX_EXIT_CODE,
    SandboxReport,
    SandboxUnavailableError,
    make_non_dumpable,
    probe,
    require,
)
from runner.spec import JobSpec, load_spec
from runner.storage import RunnerStorage, results_prefix, storage_from_env
from runner.workspace import JobFolders

EVENT_DB_ENV = "ZYRA_EVENT_DB"
SANDBOX_UNAVAILABLE = "SandboxUnavailable"


def default_command_env() -> dict[str, str]:
    """What a command needs when the spec does not say (in a pod: the image's PATH)."""
    return {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "MPLBACKEND": "Agg"}


def flush_wait_s() -> float:
    """How long to wait at the end for an unreachable event log."""
    return float(os.environ.get("ZYRA_EVENT_FLUSH_WAIT_S", "60"))


def store_result(log: EventLog, job_id: str, result: RunnerResult) -> None:
    """Store the result; an unreachable log must not change the exit code (the
    API then reads the outcome from the pod and the output from its log)."""
    try:
        log.set_result(job_id, result)
    except DependencyUnavailableError as exc:
        print(f"[runner] could not store the result: {exc}", file=sys.stderr)


def _fail_early(
    publisher: OutputPublisher, log: EventLog, spec: JobSpec, code: int, reason: str, why: str
) -> int:
    """End the job before its command ran, saying why."""
    publisher.emit(stderr=why + "\n")
    publisher.close(flush_wait_s())
    store_result(log, spec.job_id, RunnerResult(
        exit_code=code, reason=reason, duration_s=0.0, outputs=[]
    ))  # fmt: skip
    return code


def run_job(
    spec: JobSpec,
    log: EventLog,
    storage: RunnerStorage,
    cancel: threading.Event,
    sandbox: SandboxReport,
) -> int:
    """Run the job; its exit code."""
    folders = JobFolders(Path(spec.work_root))
    folders.create()
    publisher = OutputPublisher(log, spec.job_id, secrets=spec.secrets)
    try:
        require(sandbox)
    except SandboxUnavailableError as exc:
        return _fail_early(publisher, log, spec, SANDBOX_EXIT_CODE, SANDBOX_UNAVAILABLE, str(exc))
    try:
        staged = stage_inputs(storage, spec.inputs, folders.files)
    except KeyError as exc:
        # The upload expired (or was deleted) between the request and now.
        why = f"input {exc.args[0]} is no longer in storage"
        return _fail_early(publisher, log, spec, 1, "InputMissing", why)
    folders.hand_over(sandbox)
    publisher.set_progress(progress.INPUTS_FETCHED)
    publisher.emit(status="running", progress=progress.RUNNING)
    publisher.progress = progress.RUNNING
    request = folders.child_request(
        spec.argv,
        {**default_command_env(), **spec.env},
        limits=spec.limits,
        sandbox=spec.sandbox,
        outbound_allow=spec.outbound_allow,
    )
    outcome = CommandExecutor(ForkSpawner(sandbox), kill_grace_s=spec.kill_grace_s).run(
        request,
        capture_dir=folders.capture,
        timeout_s=spec.timeout_s,
        on_output=publisher.output,
        cancel=cancel,
        quotas=spec.quotas,
    )
    publisher.set_progress(progress.COMMAND_DONE)
    prefix = results_prefix(spec.job_id)
    outputs = [] if outcome.over_quota else keep_outputs(
        folders.files, storage, prefix, staged, outcome.stdout_path, publisher.stdout_binary
    )  # fmt: skip
    publisher.set_progress(progress.OUTPUTS_STORED)
    publisher.close(flush_wait_s())
    result = RunnerResult(
        exit_code=outcome.exit_code,
        reason=outcome.reason.value,
        duration_s=outcome.duration_s,
        outputs=outputs,
        stdout_is_binary=publisher.stdout_binary,
    )
    store_result(log, spec.job_id, result)
    folders.remove()
    return outcome.exit_code


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m runner", description=__doc__)
    parser.add_argument("--spec", help="job spec JSON file (default: $ZYRA_JOB_SPEC)")
    ns = parser.parse_args()
    make_non_dumpable()
    become_subreaper()
    os.umask(0o077)
    spec = load_spec(ns.spec)
    sandbox = probe(spec.sandbox)
    # The job's own credentials (the API starts every runner with them); without, the
    # stores named by the environment (a runner started by hand, the embedded ones).
    credentials = credentials_from_env()
    log = event_log_from(
        credentials.redis_url if credentials else os.environ.get("ZYRA_REDIS_URL"),
        Path(os.environ.get(EVENT_DB_ENV, Path(spec.work_root).parent / "events.sqlite3")),
    )
    storage = (
        PresignedStorage(credentials.s3) if credentials and credentials.s3 else storage_from_env()
    )
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    raise SystemExit(run_job(spec, log, storage, cancel, sandbox))


if __name__ == "__main__":
    main()
