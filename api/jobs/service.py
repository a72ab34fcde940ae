"""Ties a validated request to an execution, a job record and its events."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import anyio

from api.backends.base import Backend, LaunchRefusedError, RunnerExit, RunnerJob, RunnerReports
from api.jobs.callback_outbox import CallbackOutbox
from api.jobs.callbacks import check_callback
from api.jobs.finalisation import decide_ending
from api.jobs.ownership import may_see, shown_to, visible_filter
from api.jobs.records import (
    CallbackDelivery,
    CallbackTarget,
    JobRecord,
    RunMode,
    terminal_event,
    utcnow,
)
from api.jobs.runner_credentials import RunnerCredentials
from api.jobs.store import JobFilter, JobPage, JobStore, parse_cursor
from api.limits.dispatcher import FairShareDispatcher
from api.limits.fair_share import FairShareQueue
from api.limits.sync_slots import SyncRunSlots
from api.observability.job_metrics import JobMetrics
from api.observability.log_context import bind_job, handles_job, job_context
from api.request_errors import FieldProblem, InvalidRequestError, UnknownJobError
from api.resources import RunResources
from api.security.principals import Principal
from api.settings import Settings
from runner import progress, tracing
from runner.argv import InvalidArgsError, PathPolicy, build_argv
from runner.catalog import CommandCatalog, CommandSpec, UnknownStageError
from runner.child import ResourceLimits
from runner.credentials import JobCredentials
from runner.dependencies import DependencyUnavailableError
from runner.events import EventLog, JobEvent, RunnerResult
from runner.execute import (
    CommandExecutor,
    ExecutorUnavailableError,
)
from runner.folder_removal import FolderRemoval
from runner.inputs import (
    FILE_ID,
    StagedInput,
    UploadMeta,
    resolve_file_refs,
    upload_key,
    upload_meta_key,
)
from runner.job import JobPlace, run_job
from runner.lifecycle import ExitReason, JobStatus
from runner.log_format import plain_output
from runner.outputs import OutputFile, sha256_of_chunks
from runner.pipeline_config import CheckedPipeline, PipelineRules, Uploads, check_pipeline
from runner.secret_args import secrets_in
from runner.spec import JobSpec
from runner.storage import Storage, results_prefix

MB = 1 << 20
log = logging.getLogger("zyra.jobs")


class InputGoneError(InvalidRequestError):
    """An uploaded file named by the request left storage before the run started."""

    def __init__(self, why: str) -> None:
        super().__init__(why, [FieldProblem(loc=["body", "args"], type="file_ref", msg=why)])


class ResourcesTooLargeError(InvalidRequestError):
    def __init__(self, over: list[tuple[str, str]]) -> None:
        self.over = over
        problems = [
            FieldProblem(loc=["body", "resources", name], type="less_than_equal",
                         msg=f"{name} may be at most {limit}")
            for name, limit in over
        ]  # fmt: skip
        super().__init__("; ".join(p["msg"] for p in problems), problems)


class TimeoutTooLongError(InvalidRequestError):
    def __init__(self, requested: float, maximum: float) -> None:
        self.requested, self.maximum = requested, maximum
        why = f"timeout_s may be at most {maximum:g} seconds; got {requested:g}"
        problem = FieldProblem(
            loc=["body", "timeout_s"], msg=why, type="less_than_equal", input=requested
        )
        super().__init__(why, [problem])


class UnknownStageFilterError(InvalidRequestError):
    """`GET /jobs?stage=` naming a stage this server does not offer."""

    def __init__(self, unknown: UnknownStageError) -> None:
        why = str(unknown)
        super().__init__(why, [FieldProblem(loc=["query", "stage"], type="enum", msg=why)])


@dataclass(frozen=True)
class PreparedRun:
    command: CommandSpec
    argv: list[str]
    args: dict[str, Any]  # as the client sent them (file references included)
    timeout_s: float
    inputs: list[StagedInput]
    resources: RunResources | None = None
    secrets: tuple[str, ...] = ()  # secret argument values, scrubbed from the output


def runner_job(record: JobRecord) -> RunnerJob:
    """What the backend is told of a job: enough to start, stop or find its runner."""
    resources = RunResources.model_validate(record.resources) if record.resources else None
    return RunnerJob(record.job_id, record.stage, record.command, resources, record.runner,
                     record.traceparent)  # fmt: skip


@dataclass
class EventSummary:
    """stdout/stderr text gathered from events, and the latest progress."""

    parts: dict[str, list[str]] = field(default_factory=lambda: {"stdout": [], "stderr": []})
    sizes: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    cut: dict[str, bool] = field(default_factory=lambda: {"stdout": False, "stderr": False})
    progress: float = 0.0

    def add(self, event: JobEvent, limit: int) -> None:
        if event.progress is not None:
            self.progress = max(self.progress, event.progress)
        for stream in ("stdout", "stderr"):
            text = getattr(event, stream)
            if text is None or self.cut[stream]:
                continue
            if self.sizes[stream] + len(text) > limit:
                text, self.cut[stream] = text[: limit - self.sizes[stream]], True
            self.parts[stream].append(text)
            self.sizes[stream] += len(text)

    def log_fields(self) -> dict[str, Any]:
        return {
            "stdout": "".join(self.parts["stdout"]),
            "stderr": "".join(self.parts["stderr"]),
            "stdout_truncated": self.cut["stdout"],
            "stderr_truncated": self.cut["stderr"],
        }


class JobService:
    def __init__(
        self,
        settings: Settings,
        catalog: CommandCatalog,
        store: JobStore,
        events: EventLog,
        storage: Storage,
        executor: CommandExecutor,
        command_env: dict[str, str],
        credentials: RunnerCredentials | None = None,
        *,
        backend: Callable[[RunnerReports], Backend],
        fair_share_queue: FairShareQueue,
        principal_sync_slots: SyncRunSlots,
        callbacks: CallbackOutbox,
    ) -> None:
        """`backend` builds the backend that runs async jobs and reports their runners
        to this service; `fair_share_queue` holds each principal's jobs waiting for room
        under its cap; `principal_sync_slots` counts each principal's sync runs;
        `callbacks` delivers the callbacks of jobs that ended."""
        self.callbacks = callbacks
        self.settings = settings
        # Jobs created from here on are this process's own: reconcile leaves them alone.
        self.started_at = utcnow()
        self.credentials = credentials  # what runners get instead of the service's keys
        self.catalog = catalog
        self.store = store
        self.events = events
        self.storage = storage
        self.executor = executor
        self.command_env = command_env
        self.outbound = settings.outbound_policy  # callbacks and URL arguments
        self.paths = PathPolicy(tuple(settings.allowed_path_prefixes), self.outbound)
        self._sync_slots = anyio.CapacityLimiter(settings.sync_concurrency)
        # Fair shares (api/limits): sync runs one principal has executing, and the
        # queue its async jobs wait in until it has room at the backend.
        self.principal_sync_slots = principal_sync_slots
        self.metrics = JobMetrics(catalog, settings.sync_concurrency)
        # A sync run's folders go after its answer; close() removes those still waiting.
        self.folder_removal = FolderRemoval()
        # Last: its runners may report from here on (a cluster's pod watcher starts at
        # once); an end reported before the dispatcher exists frees its room at the
        # dispatcher's next tick instead (`_make_room`).
        self.backend = backend(self)
        self.fair_share = FairShareDispatcher(
            fair_share_queue,
            settings.max_running_jobs_per_principal,
            self.backend.dispatch_group,
            self.launch_claimed,
            self.has_ended,
            settings.fair_share_dispatch_interval_s,
        )

    # --- requests -----------------------------------------------------------------------

    async def run(
        self,
        stage: str,
        command: str | None,
        args: dict[str, Any],
        *,
        mode: RunMode,
        timeout_s: float | None,
        resources: RunResources | None,
        principal: Principal,
        callback: CallbackTarget | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> JobRecord:
        """`POST /cli/run`: a sync run's final record, or an async job's record once it is
        recorded (`mode` says which). Raises what the request is refused for, each
        answered by api/errors.py: a refused callback, an unknown stage or command,
        invalid args, a timeout or resources over the limits, an upload gone before the
        run, the sync executor down."""
        if callback is not None:  # off the event loop: the name is resolved
            await anyio.to_thread.run_sync(check_callback, callback.url, self.outbound)
        # Off the event loop: a `run` pipeline is read (maybe from S3) and parsed first.
        prepare = partial(
            self.prepare, stage, command, args, timeout_s, mode, resources, principal=principal
        )
        prepared = await anyio.to_thread.run_sync(prepare)
        if mode is RunMode.ASYNC:
            submit = partial(self.submit, prepared, principal, callback, metadata)
            record = await anyio.to_thread.run_sync(submit)
            bind_job(record.job_id)  # the request's last lines (its access line) too
            return record
        return await self.run_sync(prepared, principal, metadata)

    def prepare(
        self,
        stage: str,
        command: str | None,
        args: dict[str, Any],
        timeout_s: float | None,
        mode: RunMode = RunMode.SYNC,
        resources: RunResources | None = None,
        *,
        principal: Principal,
    ) -> PreparedRun:
        """Validate a request; raises catalog, argv or timeout errors for the client.
        Uploads it names must be ones `principal` may see."""
        spec = self.catalog.resolve(stage, command)
        command_args, extra_inputs = args, list[StagedInput]()
        secrets = secrets_in(args)
        if spec.argv_prefix == ("run",):
            # A pipeline obeys the same rules as a request; what runs is the checked copy.
            pipeline = self.check_pipeline(args, principal)
            command_args, extra_inputs = pipeline.args, pipeline.inputs
            secrets += secrets_in(pipeline.document)  # an uploaded one's too
        resolved, inputs, problems = resolve_file_refs(
            spec, command_args, lambda file_id: self.upload(file_id, principal)
        )
        if problems:
            raise InvalidArgsError(problems)
        argv = build_argv(spec, resolved, self.paths)
        maximum = (
            self.settings.sync_timeout_max_s
            if mode is RunMode.SYNC
            else self.settings.async_timeout_max_s
        )
        timeout = (
            timeout_s
            if timeout_s is not None
            else min(
                self.settings.sync_timeout_default_s if mode is RunMode.SYNC else maximum, maximum
            )
        )
        if timeout > maximum:
            raise TimeoutTooLongError(timeout, maximum)
        if resources is not None and (over := resources.over_limits(self.settings.k8s.limits)):
            raise ResourcesTooLargeError(over)
        inputs = [*inputs, *extra_inputs]
        unique_secrets = tuple(dict.fromkeys(secrets))
        return PreparedRun(spec, argv, args, timeout, inputs, resources, unique_secrets)

    def check_pipeline(self, args: dict[str, Any], principal: Principal) -> CheckedPipeline:
        """The args of a `run` request with its pipeline checked stage by stage."""
        rules = PipelineRules(
            self.catalog, self.paths, self.command_env, frozenset(self.settings.pipeline_env_allow)
        )
        uploads = Uploads(
            lambda file_id: self.upload(file_id, principal),
            lambda file_id: self.storage.get_bytes(upload_key(file_id)),
        )
        return check_pipeline(args, rules, uploads)

    def upload(self, file_id: str, principal: Principal) -> UploadMeta | None:
        """An upload's metadata; None when there is none or `principal` may not see it."""
        if not FILE_ID.match(file_id):
            return None
        raw = self.storage.get_bytes(upload_meta_key(file_id))
        meta = UploadMeta.model_validate_json(raw) if raw else None
        return meta if meta is not None and may_see(principal, meta.owner) else None

    def _new_record(
        self,
        prepared: PreparedRun,
        mode: RunMode,
        principal: Principal,
        callback: CallbackTarget | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> JobRecord:
        return JobRecord(
            job_id=uuid.uuid4().hex,
            mode=mode,
            stage=prepared.command.stage,
            command=prepared.command.name,
            args=prepared.args,
            submitted_by=principal.name,
            owner=principal.id,
            timeout_s=prepared.timeout_s,
            callback_target=callback,
            callback=CallbackDelivery() if callback else None,
            metadata=metadata,
            resources=prepared.resources.model_dump(exclude_none=True)
            if prepared.resources
            else None,
            traceparent=tracing.current_traceparent(),  # the job's trace: this request's
        )

    def _limits(self) -> ResourceLimits:
        s = self.settings
        return ResourceLimits(
            memory_bytes=s.run_memory_limit_mb * MB if s.run_memory_limit_mb else None,
            file_size_bytes=s.run_file_size_limit_mb * MB if s.run_file_size_limit_mb else None,
        )

    # --- sync ---------------------------------------------------------------------------

    async def run_sync(
        self, prepared: PreparedRun, principal: Principal, metadata: dict[str, Any] | None = None
    ) -> JobRecord:
        """Run a job in this process's template process and answer with its final record:
        the same routine and events as an async job. LimitExceededError at once while
        `principal` has its cap of sync runs executing, rather than waiting for a
        process-wide slot others need. Whatever goes wrong once the record exists, the
        record is settled before the error goes on (no job is left `running`)."""
        run_s = prepared.timeout_s + self.settings.kill_grace_s
        slots = self.principal_sync_slots
        record = self._new_record(prepared, RunMode.SYNC, principal, metadata=metadata)
        lease = await anyio.to_thread.run_sync(self._admit_sync, record, principal, run_s)
        bind_job(record.job_id)  # the rest of the request's lines
        try:

            def execute() -> JobRecord:  # once a process-wide slot is ours: it starts now
                slots.renew(principal.id, lease, run_s)
                with self.metrics.sync_slot():
                    return self._execute(record, prepared)

            return await anyio.to_thread.run_sync(execute, limiter=self._sync_slots)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._settle_abandoned, record.job_id, exc)
            raise
        finally:
            await anyio.to_thread.run_sync(slots.release, principal.id, lease)

    def _admit_sync(self, record: JobRecord, principal: Principal, run_s: float) -> str | None:
        """What precedes a sync run, in one thread (each hop to one costs a wake-up):
        `principal`'s slot (LimitExceededError without one), the record, then `queued`.
        The lease on the slot; the slot goes back if the rest fails, and a record that
        was saved is settled."""
        slots = self.principal_sync_slots
        lease = slots.acquire(principal.id, run_s)
        try:
            self.store.save(record)
        except BaseException:
            slots.release(principal.id, lease)
            raise
        self.metrics.submitted(record)
        try:
            self._announce(record.job_id)
        except BaseException as exc:
            self._settle_abandoned(record.job_id, exc)
            slots.release(principal.id, lease)
            raise
        return lease

    def _announce(self, job_id: str) -> None:
        self.events.append(job_id, status=JobStatus.QUEUED, progress=progress.QUEUED)

    def _execute(self, record: JobRecord, prepared: PreparedRun) -> JobRecord:
        place = JobPlace(
            self.events,
            self.storage,
            self.executor,
            self.executor.spawner.sandbox,
            # its uid is not ours: the pod's group is shared
            shared_folders=self.settings.sync_executor_socket is not None,
            echo=False,
            remove_folders=self.folder_removal.remove,
        )
        running = record.model_copy(update={"status": JobStatus.RUNNING, "started_at": utcnow()})
        self.store.save(running)
        result = run_job(self._spec(record, prepared), place)  # raises: run_sync settles
        final = self._finalise(running, RunnerExit(result.exit_code, result.reason), result)
        if result.reason == ExitReason.INPUT_MISSING:  # a bad reference, for the client
            raise InputGoneError(final.stderr.strip())
        return final

    def _settle_abandoned(self, job_id: str, exc: BaseException) -> None:
        """A job whose request failed before its end (a sync run's, or an async job's
        before it was queued): failed, reason Lost, saying why (a no-op once it has
        ended)."""
        if self.has_ended(job_id):
            return
        why = f"{exc}" if isinstance(exc, ExecutorUnavailableError) else type(exc).__name__
        with contextlib.suppress(DependencyUnavailableError):  # the record still ends
            self.events.append(job_id, stderr=f"the service could not finish this run: {why}\n")
        self.on_runner_exit(job_id, RunnerExit(None, ExitReason.LOST, overrides_result=True))

    def _spec(self, record: JobRecord, prepared: PreparedRun) -> JobSpec:
        """What the routine (runner/job.py) needs to run the job, here or in a runner."""
        return JobSpec(
            job_id=record.job_id,
            argv=prepared.argv,
            timeout_s=prepared.timeout_s,
            kill_grace_s=self.settings.kill_grace_s,
            env=self.command_env,
            limits=self._limits(),
            work_root=str(self.settings.work_dir / record.job_id),
            inputs=prepared.inputs,
            sandbox=self.settings.sandbox_policy,
            quotas=self.settings.run_quotas,
            outbound_allow=self.settings.outbound_allow,
            secrets=list(prepared.secrets),
        )

    # --- async --------------------------------------------------------------------------

    @tracing.traced("job.submit")
    def submit(
        self,
        prepared: PreparedRun,
        principal: Principal,
        callback: CallbackTarget | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> JobRecord:
        """Record the job, then hand it to the backend; returns at once."""
        record = self._new_record(prepared, RunMode.ASYNC, principal, callback, metadata)
        with job_context(record.job_id):  # for this call only (the caller binds its own)
            self.store.save(record)
            self.metrics.submitted(record)
            try:
                self._announce(record.job_id)
                spec = self._spec(record, prepared)
                self.fair_share.submit(record.owner, record.job_id, spec)  # now, or in turn
            except BaseException as exc:  # the client gets an error: no job may wait forever
                with contextlib.suppress(DependencyUnavailableError):
                    self._settle_abandoned(record.job_id, exc)
                raise
        return record

    @handles_job()
    def launch_claimed(self, job_id: str, spec: JobSpec) -> bool:
        """Hand a job its principal has room for to the backend; False if it has ended
        (nothing to start)."""
        record = self.store.get(job_id)
        if record is None or record.status.is_terminal():
            return False
        try:
            with tracing.span("job.launch", traceparent=record.traceparent):
                # The runner's spans are children of this one.
                traceparent = tracing.current_traceparent() or record.traceparent
                self.backend.launch(replace(runner_job(record), traceparent=traceparent), spec)
        except LaunchRefusedError as exc:
            self.events.append(job_id, stderr=f"{exc}\n")
            self.on_runner_exit(
                job_id, RunnerExit(None, ExitReason.LAUNCH_FAILED, overrides_result=True)
            )
            return False  # it has ended: its room goes to the next job
        return True

    def has_ended(self, job_id: str) -> bool:
        record = self.store.get(job_id)
        return record is None or record.status.is_terminal()

    def runner_credentials(self, spec: JobSpec) -> JobCredentials | None:
        """RunnerReports: right before the backend starts the job's runner, credentials
        that reach only this job's data, valid for its timeout plus a margin."""
        if self.credentials is None:
            return None
        lifetime_s = spec.timeout_s + self.settings.runner_credentials_margin_s
        if self.settings.backend == "kubernetes":  # the Job may live this much longer
            lifetime_s += self.settings.k8s.deadline_margin_s
        return self.credentials.mint(spec, lifetime_s)

    def _revoke_runner_credentials(self, job_id: str) -> None:
        """Once the job is final its runner needs nothing more; a failure here is
        retried by the next `sync_runner_users` (and the Secret goes with its Job)."""
        try:
            if self.credentials is not None:
                self.credentials.revoke(job_id)
            self.backend.release(job_id)
        except Exception as exc:
            log.warning("job %s: runner credentials not revoked yet: %s", job_id, exc)

    def _make_room(self, owner: str, job_id: str) -> None:
        """An ended job's room under its principal's cap goes to the next one; if that
        fails now, the dispatcher's next tick does it."""
        try:
            self.fair_share.ended(owner, job_id)
        except Exception as exc:
            log.warning("job %s: the next job of %s not dispatched yet: %s", job_id, owner, exc)

    def sync_runner_users(self) -> None:
        """Re-create the per-job Redis users Redis lost; delete those of finished jobs."""
        if self.credentials is not None:
            self.credentials.sync(self.store.active(), self.store.get)

    @handles_job()
    def on_runner_started(self, job_id: str, handle: dict[str, Any]) -> None:
        """RunnerReports: a runner started (maybe after waiting its turn);
        repeated reports change nothing."""
        record = self.store.get(job_id)
        if record is None or record.status is not JobStatus.QUEUED:
            return
        # The runner may already have finished and been finalised: never step back.
        self.store.save_unless_terminal(
            record.model_copy(
                update={"status": JobStatus.RUNNING, "started_at": utcnow(), "runner": handle}
            )
        )

    @handles_job()
    def on_runner_exit(self, job_id: str, observed: RunnerExit) -> None:
        """RunnerReports: a runner ended; safe to call twice (or from two replicas)."""
        record = self.store.get(job_id)
        if record is None or record.status.is_terminal():
            return
        self._finalise(record, observed, self.events.get_result(job_id))

    @handles_job("job.finalise")  # in the job's trace, whoever saw the runner end
    def _finalise(
        self, record: JobRecord, observed: RunnerExit, result: RunnerResult | None
    ) -> JobRecord:
        """The one end of every job, sync or async: its final record saved (unless
        someone else finalised it first), then its terminal event; the final record."""
        job_id = record.job_id
        final = self._final_record(record, observed, result)
        if result is None and observed.exit_code is not None:
            final = self._recover_from_runner(final)
        if not self.store.save_unless_terminal(final):
            return self.store.get(job_id) or final  # someone else finalised it first
        self.metrics.finished(final)  # here only: once per job, whoever finalised it
        if final.mode is RunMode.ASYNC:
            self._revoke_runner_credentials(job_id)
            self._make_room(final.owner, job_id)
        self.events.append(job_id, **terminal_event(final))
        log.info(
            "job finished",
            extra={"job_id": job_id, "status": final.status.value, "exit_code": final.exit_code},
        )
        if final.callback is not None:
            self.callbacks.schedule(job_id)
        return final

    def _final_record(
        self, record: JobRecord, observed: RunnerExit, result: RunnerResult | None
    ) -> JobRecord:
        status, exit_code, reason = decide_ending(observed, result, record.cancel_requested)
        return record.model_copy(
            update={
                **self.summarise_events(record.job_id).log_fields(),
                "status": status,
                "exit_code": exit_code,
                "reason": reason,
                "progress": progress.DONE,
                "stdout_is_binary": bool(result and result.stdout_is_binary),
                "outputs": result.outputs if result else [],
                "duration_s": result.duration_s if result else None,
                "finished_at": utcnow(),
            }
        )

    def _recover_from_runner(self, record: JobRecord) -> JobRecord:
        """The runner ran but could not reach the event log: take its output from its
        own log (the pod log; stdout and stderr interleaved, kept as stdout) and its
        outputs from storage."""
        update: dict[str, Any] = {}
        if not record.stdout and not record.stderr:
            logs = self.backend.runner_logs(record.job_id)
            if logs and self.settings.log_format == "json":  # the runners' format too
                logs = plain_output(logs)  # the echoed lines, as text
            if logs:
                update["stdout"] = logs[: self.settings.max_log_bytes]
                update["stdout_truncated"] = len(logs) > self.settings.max_log_bytes
        prefix = results_prefix(record.job_id) + "/"
        update["outputs"] = [
            OutputFile(name=obj.key.removeprefix(prefix), size=obj.size,
                       sha256=sha256_of_chunks(self.storage.open_chunks(obj.key)))
            for obj in self.storage.list(prefix)
        ]  # fmt: skip
        return record.model_copy(update=update)

    def summarise_events(self, job_id: str) -> EventSummary:
        """One pass over a job's events: its streams (each cut at max_log_bytes)
        and its latest progress."""
        limit = self.settings.max_log_bytes
        summary = EventSummary()
        after = 0
        while batch := self.events.read(job_id, after, limit=5000):
            for event in batch:
                summary.add(event, limit)
            after = batch[-1].seq
        return summary

    def live_view(self, record: JobRecord) -> JobRecord:
        """A running job's record with the output and progress so far."""
        if record.status.is_terminal():
            return record
        summary = self.summarise_events(record.job_id)
        return record.model_copy(update={**summary.log_fields(), "progress": summary.progress})

    @handles_job()
    def cancel(self, job_id: str, principal: Principal) -> tuple[JobRecord, bool]:
        """Cancel a queued or running job; (record, whether anything changed).
        UnknownJobError (a KeyError) when there is no such job for `principal`."""
        record = self.get(job_id, principal)
        if record is None:
            raise UnknownJobError(job_id)
        if record.status.is_terminal():
            return record, False
        if record.mode is RunMode.SYNC:
            return record, False  # its request is still open; it ends with it
        record = record.model_copy(update={"cancel_requested": True})
        self.store.save(record)
        if self.fair_share.withdraw(record.owner, job_id):  # never reached the backend
            self.on_runner_exit(job_id, RunnerExit(None, ExitReason.CANCELLED))
        else:
            self.backend.cancel(runner_job(record))
        return record, True

    def reconcile(self) -> None:
        """At start-up: settle jobs left running by an earlier API process. It runs while
        this one already takes requests: the jobs it created itself are not touched."""
        try:  # first: users of jobs finished while no API watched go
            self.sync_runner_users()
        except DependencyUnavailableError as exc:  # Redis down: what follows waits too
            log.warning("runner users not synced: %s", exc)
        active = [r for r in self.store.active() if r.created_at < self.started_at]
        stale_sync = [r for r in active if r.mode is RunMode.SYNC]
        for record in stale_sync:
            # Its HTTP request died with the process that served it.
            self.on_runner_exit(record.job_id, RunnerExit(None, ExitReason.LOST))
        oldest_first = sorted(active, key=lambda r: r.created_at)
        with self.fair_share.holding() as waiting:  # still in their queues: not the backend's
            self.backend.reconcile([
                runner_job(r) for r in oldest_first
                if r.mode is RunMode.ASYNC and r.job_id not in waiting
            ])  # fmt: skip
        self.fair_share.dispatch_all()  # what waited through the restart
        self.callbacks.resume()  # callbacks an earlier process had not delivered

    # --- reads --------------------------------------------------------------------------

    def get(self, job_id: str, principal: Principal) -> JobRecord | None:
        """The job, if `principal` may see it (api/jobs/ownership.py); else None, as for
        an unknown id."""
        record = self.store.get(job_id)
        return record if record is not None and may_see(principal, record.owner) else None

    def show(self, job_id: str, principal: Principal) -> JobRecord | None:
        """`GET /jobs/{id}`: the job as `principal` is shown it, with the output so far."""
        record = self.get(job_id, principal)
        return shown_to(principal, self.live_view(record)) if record is not None else None

    def list(self, flt: JobFilter, limit: int, cursor: str | None, principal: Principal) -> JobPage:
        """The jobs `principal` may see that match `flt` (its stage may be an alias), as
        it is shown them. Raises UnknownStageFilterError for a stage this server does not
        offer, ValueError for a cursor this service did not hand out."""
        try:  # an empty `?stage=` filters nothing
            stage = self.catalog.canonical_stage(flt.stage) if flt.stage else None
        except UnknownStageError as exc:
            raise UnknownStageFilterError(exc) from exc
        flt = replace(flt, stage=stage)
        visible = visible_filter(principal, flt)
        if visible is None:
            if cursor:
                parse_cursor(cursor)
            return JobPage([], None)
        page = self.store.list(visible, limit, cursor)
        return JobPage([shown_to(principal, r) for r in page.jobs], page.next_cursor)
