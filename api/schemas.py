"""Request and response bodies of the HTTP API (what /docs shows)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from api.jobs.error_line import error_line
from api.jobs.records import CallbackDelivery, JobRecord, RunMode
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

MAX_CALLBACK_HEADERS = 10
_RESERVED_HEADERS = ("host", "content-", "transfer-encoding", "connection", "zyra-")


def _header_name(name: str) -> str:
    if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}", name):
        raise PydanticCustomError(
            "header_name", "a header name is 1 to 64 letters, digits or !#$%&'*+-.^_`|~"
        )
    if name.lower().startswith(_RESERVED_HEADERS):
        raise PydanticCustomError(
            "reserved_header", "{name} is set by the service itself", {"name": name}
        )
    return name


# An HTTP token (RFC 9110), and a value without control characters (no header splitting).
CallbackHeaderName = Annotated[str, AfterValidator(_header_name)]


def _printable_ascii(value: str) -> str:
    if len(value) > 1024 or not re.fullmatch(r"[\t\x20-\x7e]*", value):
        raise PydanticCustomError(
            "header_value", "a header value is printable ASCII, at most 1024 characters"
        )
    return value


CallbackHeaderValue = Annotated[str, AfterValidator(_printable_ascii)]


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
        description="POSTed the job (as `GET /jobs/{job_id}` shows it) when an async job "
        "ends, retried for ZYRA_CALLBACK_RETRY_WINDOW_S. Must lead to a public address or "
        "one the server allows (ZYRA_OUTBOUND_ALLOW); redirects are followed only as "
        "307/308 to such an address.",
    )
    callback_secret: str | None = Field(
        None,
        repr=False,  # kept out of logs and tracebacks
        min_length=16,
        max_length=256,
        description="Signs each callback: header `Zyra-Signature: t=<unix time>,v1=<hex "
        "HMAC-SHA256 of '<t>.' + body with this secret>`. Never shown again.",
    )
    callback_headers: dict[CallbackHeaderName, CallbackHeaderValue] = Field(
        default_factory=dict,
        max_length=MAX_CALLBACK_HEADERS,
        description="Headers sent with each callback (e.g. the one a receiver's header "
        "auth expects). Never shown again; not Host, Content-*, Transfer-Encoding, "
        "Connection or Zyra-*.",
    )
    metadata: dict[str, Any] | None = Field(
        None,
        description="Any JSON object of the client's (e.g. a workflow's correlation id), "
        "at most ZYRA_MAX_METADATA_BYTES as compact JSON: echoed in every answer about "
        "the job and in its callback.",
    )
    fail_on_nonzero_exit: bool = Field(
        False,
        description="A sync run that does not end `succeeded` answers 422 with the job "
        "and a `detail`, instead of 200: for clients whose error handling keys on the "
        "HTTP status.",
    )
    resources: RunResources | None = Field(
        None,
        description="CPU and memory for an async run's pod (Kubernetes backend), each at "
        "most the server's limit; the local backend ignores them.",
    )

    @field_validator("callback_url")
    @classmethod
    def _callbacks_are_for_async_runs(cls, url: Any, info: ValidationInfo) -> Any:
        if url is not None and info.data.get("mode") is RunMode.SYNC:
            raise ValueError("callbacks are for mode async: a sync run answers with the job")
        return url

    @field_validator("callback_secret", "callback_headers")
    @classmethod
    def _callback_options_need_a_url(cls, value: Any, info: ValidationInfo) -> Any:
        if value and info.data.get("callback_url") is None:
            raise ValueError(f"{info.field_name} needs a callback_url (mode async)")
        return value

    @field_validator("args")
    @classmethod
    def _finite_numbers(cls, args: dict[str, Any]) -> dict[str, Any]:
        for name, value in args.items():
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise ValueError(f"argument {name!r} must be a finite number")
        return args


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
    """One job, in one shape wherever it is shown: the sync answer, `GET /jobs/{id}`,
    `GET /jobs`, and the body of its callback. Secret arguments (`x-zyra.secret`) are
    `***` to all but the owner, and in callbacks."""

    job_id: str
    status: JobStatus = Field(
        description="queued, running, or how it ended: succeeded (exit code 0), failed, "
        "cancelled. A failing command is still HTTP 200 unless the request set "
        "`fail_on_nonzero_exit`."
    )
    exit_code: int | None = Field(
        description="The command's exit code: 124 timeout, 128+N killed by signal N, 137 "
        "a quota; null while it runs, or when it never ran (`reason` says why)."
    )
    reason: ExitReason | None = Field(
        description="Why it ended: Completed, Error, Timeout, Signaled, Cancelled, "
        "DiskQuotaExceeded, LogLimitExceeded, SandboxUnavailable, InputMissing, Lost, "
        "LaunchFailed, DeadlineExceeded, OOMKilled, or the kubelet's reason its container "
        "never started; null while it runs."
    )
    stdout: str = Field(description="So far, while it runs.")
    stderr: str
    stdout_truncated: bool = Field(description="stdout outgrew ZYRA_MAX_LOG_BYTES: cut there.")
    stderr_truncated: bool
    stdout_is_binary: bool = Field(
        description="stdout was binary: it is the output with source `stdout`."
    )
    outputs: list[OutputFile]
    duration_s: float | None = Field(description="How long its command ran.")
    progress: float = Field(description="0 to 1.")
    mode: RunMode
    stage: str
    command: str
    args: dict[str, Any]
    metadata: dict[str, Any] | None = Field(description="The client's, as it sent it.")
    submitted_by: str = Field(
        description="Who submitted it: an API key's name, or a token's name claim."
    )
    owner: str = Field(
        description="The principal it belongs to (`key:<name>`, `oauth2:<sub>`): only it "
        "and admin see the job; what `GET /jobs?owner=` filters on."
    )
    timeout_s: float | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    outputs_expired_at: str | None = Field(
        description="When the outputs left storage (ZYRA_RESULT_TTL_S after they were "
        "stored, or gone otherwise); `outputs` still lists them, downloads answer 410.",
    )
    callback: CallbackDelivery | None = Field(
        description="Where delivery to its `callback_url` stands; null without one."
    )

    @classmethod
    def from_record(cls, record: JobRecord) -> JobView:
        data = record.model_dump(mode="json")
        return cls.model_validate({k: data[k] for k in cls.model_fields})


class FailedRunResponse(JobView):
    """A run that did not succeed, answered 422 because it asked (`fail_on_nonzero_exit`)."""

    detail: str = Field(
        description="What happened, in one line: exit code, reason, and the last line of "
        "stderr that reads as an error (else its last line)."
    )

    @classmethod
    def of(cls, view: JobView) -> FailedRunResponse:
        why = error_line(view.stderr)
        detail = (
            f"{view.stage} {view.command} {view.status.value}: exit code {view.exit_code}"
            f" ({view.reason.value if view.reason else 'no reason'})" + (f": {why}" if why else "")
        )
        return cls(**view.model_dump(), detail=detail)


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
