"""Ties a validated request to an execution and a job record."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from api.jobs.records import JobRecord, JobStatus, RunMode, utcnow
from api.jobs.store import JobStore
from api.settings import Settings
from runner.argv import PathPolicy, build_argv
from runner.catalog import CommandCatalog, CommandSpec
from runner.child import ChildRequest, ResourceLimits
from runner.execute import CommandExecutor, ExecutorUnavailableError, RunOutcome
from runner.outputs import collect_outputs, is_text, keep_binary_stdout

MB = 1 << 20


class TimeoutTooLongError(ValueError):
    def __init__(self, requested: float, maximum: float) -> None:
        self.requested, self.maximum = requested, maximum
        super().__init__(f"timeout_s may be at most {maximum:g} seconds; got {requested:g}")


@dataclass(frozen=True)
class PreparedRun:
    command: CommandSpec
    argv: list[str]
    args: dict[str, Any]
    timeout_s: float


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
        executor: CommandExecutor,
        command_env: dict[str, str],
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.executor = executor
        self.command_env = command_env
        self.paths = PathPolicy(tuple(settings.allowed_path_prefixes))
        self._sync_slots = anyio.CapacityLimiter(settings.sync_concurrency)

    def prepare(
        self, stage: str, command: str | None, args: dict[str, Any], timeout_s: float | None
    ) -> PreparedRun:
        """Validate a request; raises catalog, argv or timeout errors for the client."""
        spec = self.catalog.resolve(stage, command)
        argv = build_argv(spec, args, self.paths)
        maximum = self.settings.sync_timeout_max_s
        timeout = timeout_s if timeout_s is not None else self.settings.sync_timeout_default_s
        if timeout_s is None:
            timeout = min(timeout, maximum)
        if timeout > maximum:
            raise TimeoutTooLongError(timeout, maximum)
        return PreparedRun(spec, argv, args, timeout)

    async def run_sync(self, prepared: PreparedRun, principal: str) -> JobRecord:
        record = JobRecord(
            job_id=uuid.uuid4().hex,
            mode=RunMode.SYNC,
            stage=prepared.command.stage,
            command=prepared.command.name,
            args=prepared.args,
            submitted_by=principal,
        )
        await anyio.to_thread.run_sync(self.store.save, record)
        return await anyio.to_thread.run_sync(
            self._execute, record, prepared, limiter=self._sync_slots
        )

    def _execute(self, record: JobRecord, prepared: PreparedRun) -> JobRecord:
        job_root = self.settings.work_dir / record.job_id
        workdir, tmpdir = job_root / "files", job_root / "tmp"
        for folder in (workdir, tmpdir):
            folder.mkdir(parents=True, exist_ok=True)
        record = record.model_copy(update={"status": JobStatus.RUNNING, "started_at": utcnow()})
        self.store.save(record)
        try:
            outcome = self.executor.run(
                self._child_request(prepared.argv, workdir, tmpdir),
                capture_dir=job_root / "capture",
                timeout_s=prepared.timeout_s,
            )
            record = self._finish(record, outcome, workdir)
        except ExecutorUnavailableError as exc:
            # The record must not stay `running`; the client gets a 503.
            self.store.save(
                record.model_copy(
                    update={
                        "status": JobStatus.FAILED,
                        "reason": "Lost",
                        "stderr": f"command executor unavailable: {exc}",
                        "finished_at": utcnow(),
                    }
                )
            )
            raise
        finally:
            shutil.rmtree(job_root, ignore_errors=True)
        self.store.save(record)
        return record

    def _child_request(self, argv: list[str], workdir: Path, tmpdir: Path) -> ChildRequest:
        s = self.settings
        return ChildRequest(
            argv=argv,
            cwd=str(workdir),
            env={**self.command_env, "TMPDIR": str(tmpdir)},
            limits=ResourceLimits(
                memory_bytes=s.run_memory_limit_mb * MB if s.run_memory_limit_mb else None,
                file_size_bytes=s.run_file_size_limit_mb * MB if s.run_file_size_limit_mb else None,
            ),
        )

    def _finish(self, record: JobRecord, outcome: RunOutcome, workdir: Path) -> JobRecord:
        results = self.settings.results_dir / record.job_id
        outputs = collect_outputs(workdir, results)
        binary_stdout = not is_text(outcome.stdout_path)
        if binary_stdout:
            outputs.append(keep_binary_stdout(outcome.stdout_path, results))
            stdout, stdout_cut = "", False
        else:
            stdout, stdout_cut = read_log(outcome.stdout_path, self.settings.max_log_bytes)
        stderr, stderr_cut = read_log(outcome.stderr_path, self.settings.max_log_bytes)
        return record.model_copy(
            update={
                "status": JobStatus.SUCCEEDED if outcome.exit_code == 0 else JobStatus.FAILED,
                "exit_code": outcome.exit_code,
                "reason": outcome.reason.value,
                "progress": 1.0,
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

    def get(self, job_id: str) -> JobRecord | None:
        return self.store.get(job_id)
