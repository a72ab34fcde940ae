"""Typed answers of the service, field for field as its OpenAPI components name them.

Unknown fields are ignored, so a newer server does not break an older client;
tests/client/test_models.py compares these fields with a real server's
/openapi.json, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# A job in one of these statuses never changes again.
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class OutputFile(_Model):
    """One file a job produced (OpenAPI: OutputFile)."""

    name: str
    size: int
    sha256: str
    source: str = "workdir"


class CallbackDelivery(_Model):
    """Where delivery of a job's callback stands (OpenAPI: CallbackDelivery)."""

    state: str = "pending"
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    next_attempt_at: datetime | None = None


class JobView(_Model):
    """A job as every answer about it shows it (OpenAPI: JobView)."""

    job_id: str
    status: str
    exit_code: int | None = None
    reason: str | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    stdout_is_binary: bool = False
    outputs: list[OutputFile] = Field(default_factory=list)
    duration_s: float | None = None
    progress: float = 0.0
    mode: str = "async"
    stage: str = ""
    command: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] | None = None
    submitted_by: str | None = None
    owner: str = ""
    timeout_s: float | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outputs_expired_at: datetime | None = None
    callback: CallbackDelivery | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class JobList(_Model):
    """One page of `GET /jobs` (OpenAPI: JobList)."""

    jobs: list[JobView]
    next_cursor: str | None = None


class Upload(_Model):
    """An uploaded file's metadata (OpenAPI: UploadMeta). Pass `ref` as an argument."""

    file_id: str
    filename: str
    size: int
    sha256: str
    created_at: datetime
    owner: str = ""

    @property
    def ref(self) -> str:
        return f"file_id:{self.file_id}"


class CommandDescription(_Model):
    """One command of the catalog (OpenAPI: CommandDescription)."""

    description: str
    # `schema` would shadow a BaseModel attribute: kept under another name.
    args_schema: dict[str, Any] = Field(alias="schema")

    @property
    def arguments(self) -> dict[str, dict[str, Any]]:
        """Argument name → its JSON Schema (with `x-zyra`), in the parser's order."""
        return dict(self.args_schema.get("properties", {}))

    @property
    def required(self) -> list[str]:
        return list(self.args_schema.get("required", []))


class StageDescription(_Model):
    """One stage of the catalog (OpenAPI: StageDescription)."""

    aliases: list[str]
    commands: dict[str, CommandDescription]


class Catalog(_Model):
    """`GET /cli/commands` (OpenAPI: CatalogResponse)."""

    zyra_version: str
    stages: dict[str, StageDescription]

    def stage(self, name: str) -> tuple[str, StageDescription] | None:
        """A stage by name or alias, with its canonical name."""
        key = name.strip().lower()
        for canonical, stage in self.stages.items():
            if key == canonical or key in stage.aliases:
                return canonical, stage
        return None


class Accepted(_Model):
    """The answer to an async run (OpenAPI: AcceptedResponse)."""

    status: str = "accepted"
    job_id: str


class CancelResult(_Model):
    """The answer to `DELETE /jobs/{id}` (OpenAPI: CancelResponse)."""

    job_id: str
    status: str
    cancelled: bool
    message: str


class Event(_Model):
    """One message of a job's event stream; only the fields its event carries are set."""

    seq: int
    ts: float
    stdout: str | None = None
    stderr: str | None = None
    progress: float | None = None
    status: str | None = None
    exit_code: int | None = None
    reason: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES
