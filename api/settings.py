"""Every knob of the service, read from `ZYRA_*` environment variables."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from api.backends.job_manifest import KubernetesJobSettings
from runner.catalog import DEFAULT_STAGES, STAGE_SOURCES

CommaList = Annotated[list[str], NoDecode]


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZYRA_", extra="ignore", env_nested_delimiter="__")

    host: str = Field("127.0.0.1", description="Address `python -m api` listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port `python -m api` listens on.")

    # --- authentication -----------------------------------------------------------------
    api_keys: CommaList = Field(
        default_factory=list,
        description="Comma-separated API keys, each `key` or `name:key`. "
        "With no key configured at all, only health and docs answer.",
    )
    api_keys_file: Path | None = Field(
        None,
        description="File with one `name:key` or `name:sha256:<hex digest>` per line "
        "(e.g. a mounted Secret); blank lines and `#` comments are ignored.",
    )
    api_key: str | None = Field(
        None, description="A single key, as Zyra's own API reads it (`ZYRA_API_KEY`)."
    )

    # --- where things live --------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "zyra-orchestrator",
        description="Root of the embedded job store, results and working directories.",
    )
    backend: Literal["local", "kubernetes"] = Field(
        "local", description="Where async runs execute."
    )
    k8s: KubernetesJobSettings = Field(
        default_factory=KubernetesJobSettings,
        description="Runner Jobs with ZYRA_BACKEND=kubernetes: ZYRA_K8S__NAMESPACE, "
        'ZYRA_K8S__IMAGE, ZYRA_K8S__REDIS_URL_SECRET=\'{"name": …, "key": …}\', …',
    )
    k8s_kubeconfig: Path | None = Field(
        None, description="kubeconfig file; unset: the pod's in-cluster service account."
    )
    k8s_pull_failure_timeout_s: float = Field(
        120.0, gt=0, description="How long a runner may wait on its image before it fails."
    )
    k8s_log_fallback_after_s: float = Field(
        5.0, gt=0, description="After this long without a runner's events, relay its pod log."
    )
    redis_url: str | None = Field(
        None, description="Redis for job records and event streams; unset: embedded store."
    )
    storage: Literal["local", "s3"] = Field("local", description="Where files are kept.")
    storage_dir: Path | None = Field(
        None, description="Root of local storage (uploads/, results/); default DATA_DIR/storage."
    )
    s3_bucket: str | None = Field(None, description="Bucket for uploads and results.")
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint, e.g. in-cluster MinIO.")
    s3_public_endpoint_url: str | None = Field(
        None, description="Endpoint clients can reach; presigned download URLs are built for it."
    )
    s3_redirect_downloads: bool = Field(
        False, description="Answer downloads with a redirect to a presigned URL."
    )
    max_upload_mb: int = Field(2048, ge=1, description="Largest upload accepted (413 above).")
    upload_ttl_s: int = Field(7 * 86400, ge=60, description="Uploads are deleted after this.")
    result_ttl_s: int = Field(7 * 86400, ge=60, description="Job outputs are deleted after this.")
    cleanup_interval_s: int = Field(3600, ge=1, description="How often expired files go.")

    # --- what may run -------------------------------------------------------------------
    stages: CommaList = Field(
        default_factory=lambda: list(DEFAULT_STAGES),
        description="Stages offered. Add e.g. `wizard`, `narrate`, `swarm`, `plan` "
        "(interactive or LLM-driven, off by default).",
    )
    commands_deny: CommaList = Field(
        default_factory=list,
        description="`stage` or `stage/command` entries (canonical names) to hide.",
    )
    allowed_path_prefixes: CommaList = Field(
        default_factory=list,
        description="Absolute directories path arguments may name (e.g. a mounted data "
        "volume). Anything else must be relative to the job's working directory.",
    )

    # --- how it runs --------------------------------------------------------------------
    sync_timeout_default_s: float = Field(60.0, gt=0, description="timeout_s when not given.")
    sync_timeout_max_s: float = Field(
        300.0, gt=0, description="Upper bound on a sync run's timeout_s."
    )
    async_timeout_max_s: float = Field(
        6 * 3600.0, gt=0, description="Upper bound (and default) of an async run's timeout_s."
    )
    local_max_running: int = Field(
        4, ge=1, description="Async runners at once with the local backend; later jobs wait."
    )
    sync_concurrency: int = Field(
        8, ge=1, description="Sync runs executing at once per API process; others wait."
    )
    run_memory_limit_mb: int | None = Field(
        8192, ge=64, description="Address-space limit of one command (RLIMIT_AS); unset: none."
    )
    run_file_size_limit_mb: int | None = Field(
        8192, ge=1, description="Largest file one command may write (RLIMIT_FSIZE)."
    )
    run_env_passthrough: CommaList = Field(
        default_factory=lambda: ["PATH", "LANG", "LC_ALL", "TZ", "PROJ_DATA", "GDAL_DATA"],
        description="Environment variables of the API a command may see; nothing else is passed.",
    )
    kill_grace_s: float = Field(
        2.0, ge=0, description="Time between SIGTERM and SIGKILL when stopping a command."
    )
    max_log_bytes: int = Field(
        4 << 20, ge=1024, description="stdout/stderr kept per stream in a job record."
    )

    _split_lists = field_validator(
        "api_keys", "stages", "commands_deny", "allowed_path_prefixes", "run_env_passthrough",
        mode="before",
    )(_split)  # fmt: skip

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, stages: list[str]) -> list[str]:
        unknown = [s for s in stages if s not in STAGE_SOURCES]
        if unknown:
            raise ValueError(f"unknown stages {unknown}; known: {', '.join(STAGE_SOURCES)}")
        return stages

    @field_validator("allowed_path_prefixes")
    @classmethod
    def _absolute_prefixes(cls, prefixes: list[str]) -> list[str]:
        relative = [p for p in prefixes if not p.startswith("/")]
        if relative:
            raise ValueError(f"allowed path prefixes must be absolute: {relative}")
        return prefixes

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"

    @property
    def local_storage_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "storage"

    @property
    def storage_env(self) -> dict[str, str]:
        """What a runner needs to reach the same storage (no credentials: those
        come from the runner's own environment)."""
        env = {"ZYRA_STORAGE": self.storage, "ZYRA_STORAGE_DIR": str(self.local_storage_dir)}
        for name, value in (
            ("ZYRA_S3_BUCKET", self.s3_bucket),
            ("ZYRA_S3_ENDPOINT_URL", self.s3_endpoint_url),
            ("ZYRA_S3_PUBLIC_ENDPOINT_URL", self.s3_public_endpoint_url),
        ):
            if value:
                env[name] = value
        return env
