"""Request and response bodies of the HTTP API (what /docs shows)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from api.backends.job_manifest import RunResources
from api.jobs.records import JobRecord, RunMode
from runner.outputs import OutputFile
from runner.sandbox import SandboxMode, SandboxReport


class RunRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "stage": "visualize",
                    "command": "heatmap",
                    "args": {
                        "input": "/data/field.npy",
                        "output": "heatmap.png",
                        "no_coastline": True,
                        "no_borders": True,
                        "no_gridlines": True,
                    },
                    "mode": "sync",
                }
            ]
        },
    )

    stage: str = Field(
        min_length=1,
        max_length=64,
        description="acquire (import, ingest), process (transform), visualize (render), "
        "disseminate (export, decimate), run or search",
    )
    command: str | None = Field(
        None,
        max_length=64,
        description="Command within the stage; may be omitted for `run` and `search`.",
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments by name, as `GET /cli/commands` lists them: booleans for "
        "flags, lists for repeated options, positionals by name.",
    )
    mode: RunMode = RunMode.SYNC
    timeout_s: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Seconds before the command is killed (bounded by the server).",
    )
    callback_url: AnyHttpUrl | None = Field(
        None,
        description="POSTed the final job record when an async job ends. Must lead to a "
        "public address or one the server allows (ZYRA_OUTBOUND_ALLOW); redirects are "
        "followed only as 307/308 to such an address.",
    )
    resources: RunResources | None = Field(
        None,
        description="CPU and memory for an async run's pod (Kubernetes backend), each at "
        "most the server's limit; the local backend ignores them.",
    )

    @field_validator("args")
    @classmethod
    def _finite_numbers(cls, args: dict[str, Any]) -> dict[str, Any]:
        for name, value in args.items():
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise ValueError(f"argument {name!r} must be a finite number")
        return args


class RunResponse(BaseModel):
    status: Literal["success", "error"] = Field(
        description="`success` exactly when exit_code is 0; a failing command is still HTTP 200."
    )
    job_id: str
    stdout: str
    stderr: str
    exit_code: int
    reason: str | None = Field(
        None, description="Completed, Error, Timeout (exit 124) or Signaled (exit 128+N)."
    )
    duration_s: float
    outputs: list[OutputFile]
    stdout_is_binary: bool = Field(
        False, description="stdout was binary: it is the output with source `stdout`."
    )
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @classmethod
    def from_record(cls, record: JobRecord) -> RunResponse:
        return cls(
            status="success" if record.exit_code == 0 else "error",
            job_id=record.job_id,
            stdout=record.stdout,
            stderr=record.stderr,
            exit_code=record.exit_code if record.exit_code is not None else -1,
            reason=record.reason,
            duration_s=record.duration_s or 0.0,
            outputs=record.outputs,
            stdout_is_binary=record.stdout_is_binary,
            stdout_truncated=record.stdout_truncated,
            stderr_truncated=record.stderr_truncated,
        )


class AcceptedResponse(BaseModel):
    status: Literal["accepted"] = "accepted"
    job_id: str


class CommandDescription(BaseModel):
    description: str
    schema_: dict[str, Any] = Field(alias="schema", description="JSON Schema of `args`.")


class StageDescription(BaseModel):
    aliases: list[str]
    commands: dict[str, CommandDescription]


class CatalogResponse(BaseModel):
    zyra_version: str
    stages: dict[str, StageDescription]


class JobView(BaseModel):
    """`GET /jobs/{id}`. Secret arguments (`x-zyra.secret`) are `***` to all but the owner."""

    job_id: str
    status: str
    mode: RunMode
    stage: str
    command: str
    args: dict[str, Any]
    submitted_by: str = Field(
        description="Who submitted it: an API key's name, or a token's name claim."
    )
    owner: str = Field(
        description="The principal it belongs to (`key:<name>`, `oauth2:<sub>`): only it "
        "and admin see the job; what `GET /jobs?owner=` filters on."
    )
    exit_code: int | None
    reason: str | None
    progress: float
    stdout: str
    stderr: str
    stdout_is_binary: bool
    outputs: list[OutputFile]
    created_at: str
    started_at: str | None
    finished_at: str | None

    @classmethod
    def from_record(cls, record: JobRecord) -> JobView:
        data = record.model_dump(mode="json")
        return cls.model_validate({k: data[k] for k in cls.model_fields})


class JobList(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


class CancelResponse(BaseModel):
    job_id: str
    status: str
    cancelled: bool = Field(description="false when the job had already finished")
    message: str


class SandboxStatus(BaseModel):
    """How commands are confined on this server (docs/security.md)."""

    mode: SandboxMode = Field(description="ZYRA_SANDBOX: required, best-effort or off.")
    level: Literal["full", "partial", "none"] = Field(
        description="full: files confined to the job and signals scoped; partial: files "
        "confined; none: not confined."
    )
    landlock_abi: int
    identity: str = Field(description="Who commands run as.")

    @classmethod
    def of(cls, report: SandboxReport) -> SandboxStatus:
        return cls.model_validate(report.model_dump(include=set(cls.model_fields)))


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadinessResponse(HealthResponse):
    sandbox: SandboxStatus = Field(description="How sync commands are confined here.")
