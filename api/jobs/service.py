"""Ties a validated request to an execution, a job record and its events."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from api.backends.base import LAUNCH_FAILED, Backend, LaunchRefusedError, RunnerExit
from api.backends.job_manifest import RunResources
from api.jobs.callbacks import deliver_in_background
from api.jobs.ownership import may_see, shown_to, visible_filter
from api.jobs.records import JobRecord, JobStatus, RunMode, utcnow
from api.jobs.runner_credentials import RunnerCredentials
from api.jobs.store import JobFilter, JobPage, JobStore, parse_cursor
from api.limits.dispatcher import FairShareDispatcher
from api.limits.sync_slots import LocalSyncRunSlots, SyncRunSlots
from api.security.principals import Principal
from api.settings import Settings
from runner import progress
from runner.argv import InvalidArgsError, PathPolicy, build_argv
from runner.catalog import CommandCatalog, CommandSpec
from runner.child import ChildRequest, ResourceLimits
from runner.credentials import JobCredentials
from runner.dependencies import DependencyUnavailableError
from runner.events import EventLog, JobEvent, RunnerResult
from runner.execute import (
    CommandExecutor,
    ExecutorUnavailableError,
    ExitReason,
    RunOutcome,
)
from runner.inputs import (
    FILE_ID,
    StagedInput,
    UploadMeta,
    resolve_file_refs,
    stage_inputs,
    upload_key,
    upload_meta_key,
)
from runner.outputs import OutputFile, is_text, keep_outputs, sha256_of_chunks
from runner.pipeline_config import CheckedPipeline, PipelineRules, Uploads, check_pipeline
from runner.secret_args import Redactor, secrets_in
from runner.spec import JobSpec
from runner.storage import Storage, results_prefix
from runner.workspace import JobFolders

MB = 1 << 20
log = logging.getLogger("zyra.jobs")


class InputGoneError(LookupError):
    """An uploaded file named by the request left storage before the run started."""


class ResourcesTooLargeError(ValueError):
    def __init__(self, over: list[tuple[str, str]]) -> None:
        self.over = over
        super().__init__("; ".join(f"{name} may be at most {limit}" for name, limit in over))


class TimeoutTooLongError(ValueError):
    def __init__(self, requested: float, maximum: float) -> None:
        self.requested, self.maximum = requested, maximum
        super().__init__(f"timeout_s may be at most {maximum:g} seconds; got {requested:g}")


@dataclass(frozen=True)
class PreparedRun:
    command: CommandSpec
    argv: list[str]
    args: dict[str, Any]  # as the client sent them (file references included)
    timeout_s: float
    inputs: list[StagedInput]
    resources: RunResources | None = None
    secrets: tuple[str, ...] = ()  # secret argument values, scrubbed from the output


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


def read_log(path: Path, limit: int) -> tuple[str, bool]:
    """A captured stream as text, cut at `limit` bytes; and whether it was cut."""
    with path.open("rb") as f:
        data = f.read(limit + 1)
    return data[:limit].decode("utf-8", errors="replace"), len(data) > limit


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
    ) -> None:
        self.settings = settings
        self.credentials = credentials  # what runners get instead of the service's keys
        self.catalog = catalog
        self.store = store
        self.events = events
        self.storage = storage
        self.executor = executor
        self.command_env = command_env
        self.backend: Backend | None = None  # set once built: it calls back into us
        self.outbound = settings.outbound_policy  # callbacks and URL arguments
        self.paths = PathPolicy(tuple(settings.allowed_path_prefixes), self.outbound)
        self._sync_slots = anyio.CapacityLimiter(settings.sync_concurrency)
        # Fair shares (api/limits): sync runs one principal has executing, and the
        # queue its async jobs wait in (set once built, like the backend).
        self.principal_sync_slots: SyncRunSlots = LocalSyncRunSlots(
            settings.max_sync_runs_per_principal
        )
        self.fair_share: FairShareDispatcher | None = None

    # --- requests -----------------------------------------------------------------------

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
        self, prepared: PreparedRun, mode: RunMode, principal: Principal, callback_url: str | None
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
            callback_url=callback_url,
            resources=prepared.resources.model_dump(exclude_none=True)
            if prepared.resources
            else None,
        )

    def _limits(self) -> ResourceLimits:
        s = self.settings
        return ResourceLimits(
            memory_bytes=s.run_memory_limit_mb * MB if s.run_memory_limit_mb else None,
            file_size_bytes=s.run_file_size_limit_mb * MB if s.run_file_size_limit_mb else None,
        )

    # --- sync ---------------------------------------------------------------------------

    async def run_sync(self, prepared: PreparedRun, principal: Principal) -> JobRecord:
        """LimitExceededError at once while `principal` has its cap of sync runs executing,
        rather than waiting for a process-wide slot others need."""
        run_s = prepared.timeout_s + self.settings.kill_grace_s
        slots = self.principal_sync_slots
        lease = await anyio.to_thread.run_sync(slots.acquire, principal.id, run_s)
        try:
            record = self._new_record(prepared, RunMode.SYNC, principal, None)
            await anyio.to_thread.run_sync(self.store.save, record)

            def execute() -> JobRecord:  # once a process-wide slot is ours: it starts now
                slots.renew(principal.id, lease, run_s)
                return self._execute(record, prepared)

            return await anyio.to_thread.run_sync(execute, limiter=self._sync_slots)
        finally:
            await anyio.to_thread.run_sync(slots.release, principal.id, lease)

    def _execute(self, record: JobRecord, prepared: PreparedRun) -> JobRecord:
        folders = JobFolders(self.settings.work_dir / record.job_id)
        folders.create()
        record = record.model_copy(update={"status": JobStatus.RUNNING, "started_at": utcnow()})
        self.store.save(record)
        try:
            try:
                staged = stage_inputs(self.storage, prepared.inputs, folders.files)
            except KeyError as exc:
                self.store.save(self._failed(record, "InputMissing", f"{exc.args[0]} is gone"))
                raise InputGoneError(f"uploaded file {exc.args[0]} is no longer stored") from exc
            sandbox = self.executor.spawner.sandbox
            if self.settings.sync_executor_socket is not None:
                folders.share_with_group()  # its uid is not ours: the pod's group is shared
            elif sandbox is not None:
                folders.hand_over(sandbox)
            outcome = self.executor.run(
                self.child_request(prepared.argv, folders),
                capture_dir=folders.capture,
                timeout_s=prepared.timeout_s,
                quotas=self.settings.run_quotas,
            )
            record = self._finish_sync(record, outcome, folders.files, staged, prepared.secrets)
        except ExecutorUnavailableError as exc:
            # The record must not stay `running`; the client gets a 503.
            self.store.save(self._failed(record, "Lost", f"command executor unavailable: {exc}"))
            raise
        finally:
            folders.remove()
        self.store.save(record)
        return record

    def child_request(self, argv: list[str], folders: JobFolders) -> ChildRequest:
        policy = self.settings.sandbox_policy
        if self.settings.sync_executor_socket is not None:
            # What the command writes stays readable (and removable) by the pod's group.
            policy = policy.model_copy(update={"umask": 0o007})
        return folders.child_request(
            argv,
            self.command_env,
            limits=self._limits(),
            sandbox=policy,
            outbound_allow=self.settings.outbound_allow,
        )

    @staticmethod
    def _failed(record: JobRecord, reason: str, message: str) -> JobRecord:
        return record.model_copy(
            update={
                "status": JobStatus.FAILED,
                "reason": reason,
                "stderr": message,
                "finished_at": utcnow(),
            }
        )

    def _finish_sync(
        self,
        record: JobRecord,
        outcome: RunOutcome,
        workdir: Path,
        staged: frozenset[str],
        secrets: tuple[str, ...],
    ) -> JobRecord:
        prefix = results_prefix(record.job_id)
        binary_stdout = not is_text(outcome.stdout_path)
        outputs = [] if outcome.over_quota else keep_outputs(
            workdir, self.storage, prefix, staged, outcome.stdout_path, binary_stdout
        )  # fmt: skip
        if binary_stdout:
            stdout, stdout_cut = "", False
        else:
            stdout, stdout_cut = read_log(outcome.stdout_path, self.settings.max_log_bytes)
        stderr, stderr_cut = read_log(outcome.stderr_path, self.settings.max_log_bytes)
        scrub = Redactor(secrets)  # e.g. Zyra's pipeline runner prints a failing stage's argv
        stdout, stderr = scrub(stdout), scrub(stderr)
        return record.model_copy(
            update={
                "status": JobStatus.SUCCEEDED if outcome.exit_code == 0 else JobStatus.FAILED,
                "exit_code": outcome.exit_code,
                "reason": outcome.reason.value,
                "progress": progress.DONE,
                "stdout": stdout,
                "stderr": stderr,
                "stdout_truncated": stdout_cut,
                "stderr_truncated": stderr_cut,
                "stdout_is_binary": binary_stdout,
                "outputs": outputs,
                "duration_s": outcome.duration_s,
                "finished_at": utcnow(),
            }
        )

    # --- async --------------------------------------------------------------------------

    def submit(
        self, prepared: PreparedRun, principal: Principal, callback_url: str | None
    ) -> JobRecord:
        """Record the job, then hand it to the backend; returns at once."""
        assert self.backend is not None
        record = self._new_record(prepared, RunMode.ASYNC, principal, callback_url)
        self.store.save(record)
        self.events.append(record.job_id, status=JobStatus.QUEUED.value, progress=progress.QUEUED)
        spec = JobSpec(
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
        assert self.fair_share is not None
        self.fair_share.submit(record.owner, record.job_id, spec)  # now, or in its turn
        return record

    def launch_claimed(self, job_id: str, spec: JobSpec) -> bool:
        """Hand a job its principal has room for to the backend; False if it has ended
        (nothing to start)."""
        assert self.backend is not None
        record = self.store.get(job_id)
        if record is None or record.status.is_terminal():
            return False
        try:
            self.backend.launch(record, spec)
        except LaunchRefusedError as exc:
            self.events.append(job_id, stderr=f"{exc}\n")
            self.on_runner_exit(job_id, RunnerExit(None, LAUNCH_FAILED, overrides_result=True))
            return False  # it has ended: its room goes to the next job
        return True

    def has_ended(self, job_id: str) -> bool:
        record = self.store.get(job_id)
        return record is None or record.status.is_terminal()

    def runner_credentials(self, spec: JobSpec) -> JobCredentials | None:
        """Called by the backend right before it starts the job's runner: credentials
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
        assert self.backend is not None
        try:
            if self.credentials is not None:
                self.credentials.revoke(job_id)
            self.backend.release(job_id)
        except Exception as exc:
            log.warning("job %s: runner credentials not revoked yet: %s", job_id, exc)

    def _make_room(self, owner: str, job_id: str) -> None:
        """An ended job's room under its principal's cap goes to the next one; if that
        fails now, the dispatcher's next tick does it."""
        assert self.fair_share is not None
        try:
            self.fair_share.ended(owner, job_id)
        except Exception as exc:
            log.warning("job %s: the next job of %s not dispatched yet: %s", job_id, owner, exc)

    def sync_runner_users(self) -> None:
        """Re-create the per-job Redis users Redis lost; delete those of finished jobs."""
        if self.credentials is not None:
            self.credentials.sync(self.store.active(), self.store.get)

    def on_runner_started(self, job_id: str, handle: dict[str, Any]) -> None:
        """Called by the backend when a runner starts (maybe after waiting its turn);
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

    def on_runner_exit(self, job_id: str, observed: RunnerExit) -> None:
        """Called by the backend; safe to call twice (or from two replicas)."""
        record = self.store.get(job_id)
        if record is None or record.status.is_terminal():
            return
        result = self.events.get_result(job_id)
        final = self._final_record(record, observed, result)
        if result is None and observed.exit_code is not None:
            final = self._recover_from_runner(final)
        if not self.store.save_unless_terminal(final):
            return  # someone else finalised it first
        self._revoke_runner_credentials(job_id)
        self._make_room(final.owner, job_id)
        self.events.append(
            job_id,
            status=final.status.value,
            exit_code=final.exit_code,
            reason=final.reason,
            progress=progress.DONE,
        )
        log.info(
            "job finished",
            extra={"job_id": job_id, "status": final.status.value, "exit_code": final.exit_code},
        )
        if final.callback_url:
            deliver_in_background(final.callback_url, final.model_dump(mode="json"), self.outbound)

    def _final_record(
        self, record: JobRecord, observed: RunnerExit, result: RunnerResult | None
    ) -> JobRecord:
        if observed.overrides_result:
            exit_code = (
                observed.exit_code
                if observed.exit_code is not None
                else (result.exit_code if result else None)
            )
            reason = observed.reason
        else:
            exit_code = result.exit_code if result else observed.exit_code
            reason = result.reason if result else observed.reason
        if record.cancel_requested:
            status, reason = JobStatus.CANCELLED, ExitReason.CANCELLED.value
        elif exit_code == 0:
            status = JobStatus.SUCCEEDED
        else:
            status = JobStatus.FAILED
        if exit_code is None and not record.cancel_requested and not observed.overrides_result:
            reason = "Lost"
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
        assert self.backend is not None
        update: dict[str, Any] = {}
        if not record.stdout and not record.stderr:
            logs = self.backend.runner_logs(record.job_id)
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

    def cancel(self, job_id: str, principal: Principal) -> tuple[JobRecord, bool]:
        """Cancel a queued or running job; (record, whether anything changed). KeyError
        when there is no such job for `principal`."""
        assert self.backend is not None
        record = self.get(job_id, principal)
        if record is None:
            raise KeyError(job_id)
        if record.status.is_terminal():
            return record, False
        if record.mode is RunMode.SYNC:
            return record, False  # its request is still open; it ends with it
        record = record.model_copy(update={"cancel_requested": True})
        self.store.save(record)
        assert self.fair_share is not None
        if self.fair_share.withdraw(record.owner, job_id):  # never reached the backend
            self.on_runner_exit(job_id, RunnerExit(None, ExitReason.CANCELLED.value))
        else:
            self.backend.cancel(record)
        return record, True

    def reconcile(self) -> None:
        """At start-up: settle jobs left running by an earlier API process."""
        assert self.backend is not None
        try:  # first: users of jobs finished while no API watched go
            self.sync_runner_users()
        except DependencyUnavailableError as exc:  # Redis down: what follows waits too
            log.warning("runner users not synced: %s", exc)
        active = self.store.active()
        stale_sync = [r for r in active if r.mode is RunMode.SYNC]
        for record in stale_sync:
            # Its HTTP request died with the process that served it.
            self.on_runner_exit(record.job_id, RunnerExit(None, "Lost"))
        assert self.fair_share is not None
        with self.fair_share.holding() as waiting:  # still in their queues: not the backend's
            self.backend.reconcile(
                [r for r in active if r.mode is RunMode.ASYNC and r.job_id not in waiting]
            )
        self.fair_share.dispatch_all()  # what waited through the restart

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
        """The jobs `principal` may see that match `flt`, as it is shown them. Raises
        ValueError for a cursor this service did not hand out."""
        visible = visible_filter(principal, flt)
        if visible is None:
            if cursor:
                parse_cursor(cursor)
            return JobPage([], None)
        page = self.store.list(visible, limit, cursor)
        return JobPage([shown_to(principal, r) for r in page.jobs], page.next_cursor)
