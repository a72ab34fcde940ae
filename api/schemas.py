"""Request and response bodies of the HTTP API (what /docs shows)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from api.jobs.records import JobRecord, RunMode
from api.resources import RunResources
from runner.lifecycle import ExitReason, JobStatus
from runner.outputs import OutputFile
from runner.sandbox import SandboxMode, SandboxReport


def strings_in(value: Any) -> Iterator[str]:
    """Every string of an argument's value: itself, a list's items, an object's keys and
    values (an inline `run` pipeline), however deep."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)


def _valid_unicode(value: Any) -> Any:
    """JSON may escape half a surrogate pair (`\\ud800`); that is no character, and no
    store, file or command could be handed it."""
    for text in strings_in(value):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PydanticCustomError(  # the type pydantic gives a `str` field's own
                "string_unicode",
                "text must be valid Unicode: {bad} at position {at} is a lone surrogate",
                {"bad": repr(text[exc.start : exc.end]), "at": exc.start},
            ) from None
    return value


# One argument's value, checked on its own: a problem is named by the argument.
ArgValue = Annotated[Any, AfterValidator(_valid_unicode)]


class RunRequest(BaseModel):
    # Its example names an input path this server allows: api/openapi.py adds it.
    model_config = ConfigDict(extra="forbid")

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
    args: dict[str, ArgValue] = Field(
        default_factory=dict,
        description="Arguments by name, as `GET /cli/commands` lists them: booleans for "
        "flags, lists for repeated options, positionals by name. Text must be valid "
        "Unicode; each string has at most the server's ZYRA_MAX_ARG_LENGTH characters.",
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
    reason: ExitReason | None = Field(
        None,
        description="Why it ended: Completed, Error, Timeout (exit 124), Signaled (exit 128+N), "
        "DiskQuotaExceeded or LogLimitExceeded (exit 137), SandboxUnavailable (exit 126).",
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
    status: JobStatus
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
    reason: ExitReason | None = Field(description="Why it ended (null while it runs).")
    progress: float
    stdout: str
    stderr: str
    stdout_is_binary: bool
    outputs: list[OutputFile]
    created_at: str
    started_at: str | None
    finished_at: str | None
    outputs_expired_at: str | None = Field(
        None,
        description="When the outputs left storage (ZYRA_RESULT_TTL_S after they were "
        "stored, or gone otherwise); `outputs` still lists them, downloads answer 410.",
    )

    @classmethod
    def from_record(cls, record: JobRecord) -> JobView:
        data = record.model_dump(mode="json")
        return cls.model_validate({k: data[k] for k in cls.model_fields})


class JobList(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


class CancelResponse(BaseModel):
    job_id: str
    status: JobStatus
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
