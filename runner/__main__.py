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
import logging
import os
import signal
import threading
from pathlib import Path

from runner import tracing
from runner.credentials import credentials_from_env
from runner.events import event_log_from
from runner.execute import CommandExecutor, ForkSpawner
from runner.job import JobPlace, run_job
from runner.log_format import bind, configure_logging, log_format_from_env
from runner.presigned import PresignedStorage
from runner.reaper import become_subreaper
from runner.sandbox import make_non_dumpable, probe
from runner.spec import JobSpec, load_spec
from runner.storage import storage_from_env

EVENT_DB_ENV = "ZYRA_EVENT_DB"
RUNNER_SERVICE = "zyra-orchestrator-runner"
log = logging.getLogger("zyra.runner")


def flush_wait_s() -> float:
    """How long to wait at the end for an unreachable event log."""
    return float(os.environ.get("ZYRA_EVENT_FLUSH_WAIT_S", "60"))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m runner", description=__doc__)
    parser.add_argument("--spec", help="job spec JSON file (default: $ZYRA_JOB_SPEC)")
    ns = parser.parse_args()
    fmt = log_format_from_env()  # ZYRA_LOG_FORMAT, as the API's
    # Text: the log is the command's output alone, as ever (the API may read it back as
    # such); JSON: the runner's own lines too, told apart by their logger.
    configure_logging(fmt, level=logging.INFO if fmt == "json" else logging.WARNING)
    make_non_dumpable()
    become_subreaper()
    os.umask(0o077)
    spec = load_spec(ns.spec)
    bind(job_id=spec.job_id)
    try:
        # Continues the job's trace (TRACEPARENT) if configured; without a thread of its
        # own, which the command's fork would start again beside the confined command.
        tracing.start(RUNNER_SERVICE, held=True)
    except Exception:  # a bad OTEL_* value costs the traces, not the job
        log.warning("traces are off: could not start them", exc_info=True)
    try:
        code = _run(spec)
    except Exception:
        log.exception("runner failed")
        code = 1
    finally:
        tracing.stop()  # its spans leave before the process does
    raise SystemExit(code)


def _run(spec: JobSpec) -> int:
    sandbox = probe(spec.sandbox)
    # The job's own credentials (the API starts every runner with them); without, the
    # stores named by the environment (a runner started by hand, the embedded ones).
    credentials = credentials_from_env()
    events = event_log_from(
        credentials.redis_url if credentials else os.environ.get("ZYRA_REDIS_URL"),
        Path(os.environ.get(EVENT_DB_ENV, Path(spec.work_root).parent / "events.sqlite3")),
    )
    storage = (
        PresignedStorage(credentials.s3) if credentials and credentials.s3 else storage_from_env()
    )
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    spawner = ForkSpawner(sandbox, early_report=True)  # a runner forks nothing else
    executor = CommandExecutor(spawner, kill_grace_s=spec.kill_grace_s)
    place = JobPlace(events, storage, executor, sandbox, flush_wait_s=flush_wait_s())
    log.info("runner started", extra={"sandbox": sandbox.level})
    with tracing.span("runner.job", {"zyra.job_id": spec.job_id},
                      traceparent=os.environ.get(tracing.TRACEPARENT_ENV)):  # fmt: skip
        result = run_job(spec, place, cancel)
    log.info(
        "runner finished",
        extra={"exit_code": result.exit_code, "reason": result.reason,
               "duration_s": result.duration_s, "outputs": len(result.outputs)},
    )  # fmt: skip
    return result.exit_code


if __name__ == "__main__":
    main()
