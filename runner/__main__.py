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
import threading
from pathlib import Path

from runner.credentials import credentials_from_env
from runner.events import event_log_from
from runner.execute import CommandExecutor, ForkSpawner
from runner.job import JobPlace, run_job
from runner.presigned import PresignedStorage
from runner.reaper import become_subreaper
from runner.sandbox import make_non_dumpable, probe
from runner.spec import load_spec
from runner.storage import storage_from_env

EVENT_DB_ENV = "ZYRA_EVENT_DB"


def flush_wait_s() -> float:
    """How long to wait at the end for an unreachable event log."""
    return float(os.environ.get("ZYRA_EVENT_FLUSH_WAIT_S", "60"))


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
    spawner = ForkSpawner(sandbox, early_report=True)  # a runner forks nothing else
    executor = CommandExecutor(spawner, kill_grace_s=spec.kill_grace_s)
    place = JobPlace(log, storage, executor, sandbox, flush_wait_s=flush_wait_s())
    raise SystemExit(run_job(spec, place, cancel).exit_code)


if __name__ == "__main__":
    main()
