"""`python -m runner [--spec FILE]`: execute one job, the way a runner pod does.

Reads the job spec, runs the command in a forked child (same isolation as a
sync run), publishes its output as events and echoes it, collects outputs,
stores the result beside the events, and exits with the command's exit code.
SIGTERM cancels: the command's process group gets SIGTERM, then SIGKILL after
the grace period.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from runner import progress
from runner.child import ChildRequest
from runner.dependencies import DependencyUnavailableError
from runner.events import EventLog, RunnerResult, event_log_from
from runner.execute import CommandExecutor, ForkSpawner
from runner.inputs import stage_inputs
from runner.outputs import collect_outputs, keep_binary_stdout
from runner.publish import OutputPublisher
from runner.spec import JobSpec, load_spec
from runner.storage import Storage, results_prefix, storage_from_env

EVENT_DB_ENV = "ZYRA_EVENT_DB"


def default_command_env(work_root: Path) -> dict[str, str]:
    """What a command needs when the spec does not say (in a pod: a writable HOME
    on the work volume, the image's PATH)."""
    home = work_root / "home"
    (home / ".config" / "matplotlib").mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": str(home / ".config" / "matplotlib"),
    }


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


def run_job(spec: JobSpec, log: EventLog, storage: Storage, cancel: threading.Event) -> int:
    """Run the job; its exit code."""
    work_root = Path(spec.work_root)
    workdir, tmpdir = work_root / "files", work_root / "tmp"
    for folder in (workdir, tmpdir):
        folder.mkdir(parents=True, exist_ok=True)
    publisher = OutputPublisher(log, spec.job_id)
    try:
        staged = stage_inputs(storage, spec.inputs, workdir)
    except KeyError as exc:
        # The upload expired (or was deleted) between the request and now.
        publisher.emit(stderr=f"input {exc.args[0]} is no longer in storage\n")
        publisher.close(flush_wait_s())
        store_result(log, spec.job_id, RunnerResult(
            exit_code=1, reason="InputMissing", duration_s=0.0, outputs=[]
        ))  # fmt: skip
        return 1
    publisher.set_progress(progress.INPUTS_FETCHED)
    publisher.emit(status="running", progress=progress.RUNNING)
    publisher.progress = progress.RUNNING
    request = ChildRequest(
        argv=spec.argv,
        cwd=str(workdir),
        env={**default_command_env(work_root), **spec.env, "TMPDIR": str(tmpdir)},
        limits=spec.limits,
    )
    outcome = CommandExecutor(ForkSpawner(), kill_grace_s=spec.kill_grace_s).run(
        request,
        capture_dir=work_root / "capture",
        timeout_s=spec.timeout_s,
        on_output=publisher.output,
        cancel=cancel,
    )
    publisher.set_progress(progress.COMMAND_DONE)
    prefix = results_prefix(spec.job_id)
    outputs = collect_outputs(workdir, storage, prefix, exclude=staged)
    if publisher.stdout_binary:
        outputs.append(keep_binary_stdout(outcome.stdout_path, storage, prefix))
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
    shutil.rmtree(work_root, ignore_errors=True)
    return outcome.exit_code


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m runner", description=__doc__)
    parser.add_argument("--spec", help="job spec JSON file (default: $ZYRA_JOB_SPEC)")
    ns = parser.parse_args()
    spec = load_spec(ns.spec)
    log = event_log_from(
        os.environ.get("ZYRA_REDIS_URL"),
        Path(os.environ.get(EVENT_DB_ENV, Path(spec.work_root).parent / "events.sqlite3")),
    )
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    raise SystemExit(run_job(spec, log, storage_from_env(), cancel))


if __name__ == "__main__":
    main()
