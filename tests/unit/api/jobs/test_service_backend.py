"""The job service builds its backend and its fair-share dispatcher itself, hands the
backend each job as the runner's own view of it (RunnerJob), and hears back through
RunnerReports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from api.backends.base import RunnerExit, RunnerJob, RunnerReports
from api.jobs.records import RunMode
from api.jobs.service import JobService, PreparedRun
from api.jobs.store import SqliteJobStore
from api.limits.fair_share import SqliteFairShareQueue
from api.limits.sync_slots import LocalSyncRunSlots
from api.resources import RunResources
from api.security.principals import Principal, Scope
from api.server import callback_outbox
from api.settings import Settings
from api.streams.follow import last_word
from runner.catalog import CommandCatalog, CommandSpec
from runner.dependencies import DependencyUnavailableError
from runner.events import SqliteEventLog
from runner.execute import CommandExecutor, Zygote
from runner.lifecycle import ExitReason, JobStatus
from runner.log_format import context_fields, json_line, output_lines
from runner.spec import JobSpec
from runner.storage import LocalStorage

ALICE = Principal.for_api_key("alice", frozenset({Scope.RUN, Scope.READ}))
HEATMAP = CommandSpec(stage="visualize", name="heatmap", description="", args={},
                      argv_prefix=("visualize", "heatmap"))  # fmt: skip


class RecordingBackend:
    """Takes every job; its runners end when the test says so."""

    dispatch_group = "test:one"

    def __init__(self, reports: RunnerReports) -> None:
        self.reports = reports
        self.launched: list[RunnerJob] = []
        self.cancelled: list[RunnerJob] = []
        self.reconciled: list[RunnerJob] = []
        self.log: str | None = None  # the runner's own log (a pod's)

    def launch(self, job: RunnerJob, spec: JobSpec) -> None:
        self.launched.append(job)

    def cancel(self, job: RunnerJob) -> None:
        self.cancelled.append(job)
        self.reports.on_runner_exit(job.job_id, RunnerExit(None, ExitReason.CANCELLED))

    def reconcile(self, active: list[RunnerJob]) -> None:
        self.reconciled = active

    def release(self, job_id: str) -> None: ...

    def runner_logs(self, job_id: str) -> str | None:
        return self.log

    def forget(self, job_ids: Sequence[str]) -> None: ...

    def close(self) -> None: ...


@pytest.fixture
def service(tmp_path: Path) -> JobService:
    return build_service(tmp_path)


def build_service(tmp_path: Path, **overrides: Any) -> JobService:
    settings = Settings(data_dir=tmp_path / "data", max_running_jobs_per_principal=1, **overrides)
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    return JobService(
        settings,
        CommandCatalog({}),
        store,
        SqliteEventLog(tmp_path / "events.sqlite3"),
        LocalStorage(tmp_path / "storage"),
        CommandExecutor(Zygote({}, settings.sandbox_policy), settings.kill_grace_s),
        {},
        backend=RecordingBackend,
        fair_share_queue=SqliteFairShareQueue(tmp_path / "fair_share.sqlite3"),
        principal_sync_slots=LocalSyncRunSlots(settings.max_sync_runs_per_principal),
        callbacks=callback_outbox(settings, store),
    )


def heatmap(**kw: Any) -> PreparedRun:
    return PreparedRun(HEATMAP, ["visualize", "heatmap"], {}, 5.0, [], **kw)


def backend_of(service: JobService) -> RecordingBackend:
    assert isinstance(service.backend, RecordingBackend)
    return service.backend


def test_the_backend_reports_to_the_service_that_built_it(service: JobService) -> None:
    backend = backend_of(service)
    assert backend.reports is service
    record = service.submit(heatmap(resources=RunResources(cpu="500m")), ALICE, None)
    assert backend.launched == [
        RunnerJob(record.job_id, "visualize", "heatmap", RunResources(cpu="500m"))
    ]
    backend.reports.on_runner_started(record.job_id, {"kind": "test", "pid": 1})
    assert service.store.get(record.job_id).status is JobStatus.RUNNING  # type: ignore[union-attr]
    backend.reports.on_runner_exit(record.job_id, RunnerExit(0, ExitReason.COMPLETED))
    final = service.store.get(record.job_id)
    assert final is not None
    assert (final.status, final.exit_code) == (JobStatus.SUCCEEDED, 0)


def test_a_principals_next_job_reaches_the_backend_when_its_last_one_ends(
    service: JobService,
) -> None:
    backend = backend_of(service)
    first = service.submit(heatmap(), ALICE, None)
    second = service.submit(heatmap(), ALICE, None)  # over alice's cap of 1: it waits
    assert [j.job_id for j in backend.launched] == [first.job_id]
    backend.reports.on_runner_exit(first.job_id, RunnerExit(0, ExitReason.COMPLETED))
    assert [j.job_id for j in backend.launched] == [first.job_id, second.job_id]


def test_cancel_and_reconcile_hand_the_backend_the_runners_handle(tmp_path: Path) -> None:
    earlier = build_service(tmp_path)  # the API process before a restart
    running = earlier.submit(heatmap(), ALICE, None)
    waiting = earlier.submit(heatmap(), ALICE, None)
    handle = {"kind": "test", "pid": 4242}
    earlier.on_runner_started(running.job_id, handle)
    service = build_service(tmp_path)  # the same stores, a new process
    backend = backend_of(service)
    service.reconcile()  # the waiting job is the dispatcher's, not the backend's
    assert backend.reconciled == [
        RunnerJob(running.job_id, "visualize", "heatmap", runner_handle=handle)
    ]
    service.cancel(running.job_id, ALICE)
    assert backend.cancelled == [
        RunnerJob(running.job_id, "visualize", "heatmap", runner_handle=handle)
    ]
    assert service.store.get(running.job_id).status is JobStatus.CANCELLED  # type: ignore[union-attr]
    assert [j.job_id for j in backend.launched] == [waiting.job_id]  # its room came free


def test_reconcile_leaves_alone_the_jobs_this_process_took_meanwhile(tmp_path: Path) -> None:
    """It runs in the background at start-up while requests come in: a job submitted
    then, not yet with its runner's handle, is not lost, nor a sync run in progress."""
    service = build_service(tmp_path)
    backend = backend_of(service)
    launched = service.submit(heatmap(), ALICE, None)  # no handle yet: starting
    in_progress = service._new_record(heatmap(), RunMode.SYNC, ALICE).model_copy(
        update={"status": JobStatus.RUNNING}
    )
    service.store.save(in_progress)
    service.reconcile()
    assert backend.reconciled == []
    for job_id in (launched.job_id, in_progress.job_id):
        record = service.store.get(job_id)
        assert record is not None and record.reason is None, record


def test_the_terminal_event_stored_is_the_one_a_stream_builds_from_the_record(
    service: JobService,
) -> None:
    # A stream that finds the record ended before the event is stored builds the event
    # itself (api/streams/follow.py): every client must see the same message.
    backend = backend_of(service)
    record = service.submit(heatmap(), ALICE, None)
    backend.reports.on_runner_started(record.job_id, {"kind": "test", "pid": 1})
    backend.reports.on_runner_exit(record.job_id, RunnerExit(0, ExitReason.COMPLETED))
    final = service.store.get(record.job_id)
    assert final is not None
    *_, stored = service.events.read(record.job_id, 0)
    assert stored == last_word(final, stored.seq)


@pytest.mark.parametrize(
    ("log_format", "log", "stdout"),
    [
        # Text: the log is the command's output, JSON-looking lines and all.
        ("text", '{"logger": "app", "message": "hi"}\n', '{"logger": "app", "message": "hi"}\n'),
        # JSON: the runner's echo of the output, without its own lines.
        ("json", json_line("zyra.runner", "runner started") + "\n"
         + output_lines("stdout", '{"logger": "app", "message": "hi"}\n'),
         '{"logger": "app", "message": "hi"}\n'),
    ],
)  # fmt: skip
def test_a_runner_that_reached_no_event_log_has_its_output_read_in_its_log_format(
    tmp_path: Path, log_format: str, log: str, stdout: str
) -> None:
    service = build_service(tmp_path, log_format=log_format)
    record = service.submit(heatmap(), ALICE, None)
    backend_of(service).log = log
    service.on_runner_exit(record.job_id, RunnerExit(0, ExitReason.COMPLETED))
    final = service.store.get(record.job_id)
    assert final is not None and final.status is JobStatus.SUCCEEDED
    assert final.stdout == stdout


def test_a_submit_names_its_job_on_log_lines_for_the_call_only(service: JobService) -> None:
    """The request that submitted binds the job for its own lines; a thread that calls
    `submit` (a test, a worker reused later) keeps no job of a call that has ended."""
    service.submit(heatmap(), ALICE, None)
    assert "job_id" not in context_fields()


def _sync_run_in(service: JobService) -> BaseException:
    """A sync run of `heatmap()` by ALICE that fails before its command: the error."""
    with pytest.raises(DependencyUnavailableError) as raised:
        anyio.run(service.run_sync, heatmap(), ALICE)
    return raised.value


def test_a_sync_run_its_record_cannot_be_saved_for_gives_its_slot_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = build_service(tmp_path, max_sync_runs_per_principal=1)

    def down(_: object) -> None:
        raise DependencyUnavailableError("Redis", ConnectionError("refused"))

    monkeypatch.setattr(service.store, "save", down)
    _sync_run_in(service)
    monkeypatch.undo()
    assert service.store.active() == []
    lease = service.principal_sync_slots.acquire(ALICE.id, 60)  # not LimitExceededError
    service.principal_sync_slots.release(ALICE.id, lease)


def test_a_sync_run_that_cannot_be_announced_ends_lost_and_gives_its_slot_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = build_service(tmp_path, max_sync_runs_per_principal=1)
    append = service.events.append
    calls: list[str] = []

    def down_once(job_id: str, **fields: Any) -> Any:
        calls.append(job_id)
        if len(calls) == 1:  # `queued`
            raise DependencyUnavailableError("Redis", ConnectionError("refused"))
        return append(job_id, **fields)

    monkeypatch.setattr(service.events, "append", down_once)
    _sync_run_in(service)
    record = service.store.get(calls[0])
    assert record is not None  # saved before `queued`, and settled
    assert (record.status, record.reason) == (JobStatus.FAILED, ExitReason.LOST)
    lease = service.principal_sync_slots.acquire(ALICE.id, 60)
    service.principal_sync_slots.release(ALICE.id, lease)
