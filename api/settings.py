"""Every knob of the service, read from `ZYRA_*` environment variables."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from api.security.jwks import insecure_url_problem
from api.security.oauth2 import ASYMMETRIC_ALGORITHMS, OAuth2Config
from runner.catalog import DEFAULT_STAGES, STAGE_SOURCES
from runner.outbound import OutboundPolicy, parse_networks
from runner.quotas import MB, RunQuotas
from runner.sandbox import SandboxMode, SandboxPolicy
from runner.template_pool import default_size as default_template_processes

DEFAULT_DATA_DIR = Path(tempfile.gettempdir()) / "zyra-orchestrator"


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A list setting: comma-separated in the environment, blanks dropped.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split)]


class KubernetesSettings(BaseModel):
    """The Kubernetes backend (ZYRA_BACKEND=kubernetes): how the API reaches the cluster
    and how runner Jobs look. Each field is `ZYRA_K8S__<FIELD>`."""

    kubeconfig: Path | None = Field(
        None, description="kubeconfig file; unset: the pod's in-cluster service account."
    )
    pull_failure_timeout_s: float = Field(
        120.0, gt=0, description="How long a runner may wait on its image before it fails."
    )
    log_fallback_after_s: float = Field(
        5.0, gt=0, description="After this long without a runner's events, relay its pod log."
    )
    namespace: str = Field(
        "default",
        description="Namespace of the runner Jobs and their Secrets.",
    )
    image: str = Field(
        "zyra-orchestrator-runner:latest",
        description="Image of the runner container (`Dockerfile.runner`).",
    )
    image_pull_policy: str = Field(
        "IfNotPresent",
        description="`imagePullPolicy` of the runner container.",
    )
    runner_command: list[str] = Field(
        default_factory=lambda: ["python", "-m", "runner"],
        description="Command of the runner container.",
    )
    work_mount: str = Field("/work", description="Where the work emptyDir is mounted.")
    service_account: str | None = Field(
        None,
        description=(
            "ServiceAccount of runner pods (its token is never mounted); unset: the "
            "namespace's default."
        ),
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="`nodeSelector` of runner pods.",
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        description="`tolerations` of runner pods.",
    )
    volumes: list[dict[str, Any]] = Field(
        default_factory=list,
        description="More `volumes` of runner pods: a data volume whose paths "
        "ZYRA_ALLOWED_PATH_PREFIXES allows (mount it with ZYRA_K8S__VOLUME_MOUNTS).",
    )
    volume_mounts: list[dict[str, Any]] = Field(
        default_factory=list,
        description="More `volumeMounts` of the runner container, always read-only: a data "
        "volume at the same path as in the sync executor, so async runs read what sync "
        "runs read.",
    )
    requests: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "250m", "memory": "512Mi"},
        description=(
            "Resource requests of the runner container; a request's `resources` replace "
            "them for its run."
        ),
    )
    limits: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "2", "memory": "4Gi"},
        description=(
            "Resource limits of the runner container, and the most a request's "
            "`resources` may ask (422 above)."
        ),
    )
    ttl_after_finished_s: int = Field(
        3600,
        description=(
            "`ttlSecondsAfterFinished` of a runner Job: Kubernetes deletes it, its pod "
            "and its Secret this long after it finished."
        ),
    )
    deadline_margin_s: int = Field(
        60,
        description=(
            "Seconds added to a run's timeout for its Job's `activeDeadlineSeconds` "
            "(start-up and upload time); past it the run fails with DeadlineExceeded."
        ),
    )
    work_size_limit: str = Field(
        "10Gi",
        description="`sizeLimit` of a runner pod's work emptyDir.",
    )
    run_as_user: int = Field(
        10001,
        description="uid, gid and fsGroup of runner pods.",
    )
    plain_env: dict[str, str] = Field(
        default_factory=dict, description="Non-secret runner settings (storage kind, bucket…)."
    )

    @model_validator(mode="after")
    def _data_volumes_fit_the_pod(self) -> KubernetesSettings:
        # Checked at start-up: a bad entry would otherwise fail every async run's Job.
        names = [volume.get("name") for volume in self.volumes]
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError("ZYRA_K8S__VOLUMES: every volume needs a `name`")
            if name in ("work", "tmp") or names.count(name) > 1:
                raise ValueError(
                    f"ZYRA_K8S__VOLUMES: volume name {name!r} is taken (work and tmp are "
                    "the runner's own; names must be unique)"
                )
        for mount in self.volume_mounts:
            name, path = mount.get("name"), mount.get("mountPath")
            if name not in names:
                raise ValueError(
                    f"ZYRA_K8S__VOLUME_MOUNTS: mount of {name!r} names no volume of "
                    f"ZYRA_K8S__VOLUMES (declared: {names})"
                )
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"ZYRA_K8S__VOLUME_MOUNTS: {name!r} needs an absolute `mountPath`")
            # It may not hide the runner's own folders nor land among its job folders;
            # inside /tmp (a scratch emptyDir) it is harmless.
            work, target = PurePosixPath(self.work_mount), PurePosixPath(path)
            hidden = [own for own in (work, PurePosixPath("/tmp")) if _within(own, target)]
            if hidden or _within(target, work):
                raise ValueError(
                    f"ZYRA_K8S__VOLUME_MOUNTS: {path} would hide the runner's own "
                    f"{self.work_mount} or /tmp, or lie inside {self.work_mount}"
                )
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZYRA_", extra="ignore", env_nested_delimiter="__")

    host: str = Field("127.0.0.1", description="Address `python -m api` listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port `python -m api` listens on.")

    # --- authentication -----------------------------------------------------------------
    api_keys: CommaList = Field(
        default_factory=list,
        description="Comma-separated API keys, each `key` or `name:key`, optionally "
        "followed by scopes after a space (`ops:k admin`; default `run read`). "
        "With no key (and no OAuth2 issuer) configured, only health and docs answer.",
    )
    api_keys_file: Path | None = Field(
        None,
        description="File with one `name:key` or `name:sha256:<hex digest>` per line "
        "(e.g. a mounted Secret), optionally followed by scopes: `alice:sha256:… run,read`; "
        "blank lines and `#` comments are ignored.",
    )
    api_key: str | None = Field(
        None, description="A single key, as Zyra's own API reads it (`ZYRA_API_KEY`)."
    )

    # --- authentication: OAuth2 bearer tokens (docs/security.md, "Principals") -------------
    oauth2_issuer: str | None = Field(
        None,
        description="Issuer of the JWT access tokens accepted as `Authorization: Bearer`, "
        "exactly as their `iss` claim says (e.g. `https://id.example.com/realms/zyra`); "
        "HTTPS (HTTP only on loopback). Unset: no tokens, only API keys.",
    )
    oauth2_audience: CommaList = Field(
        default_factory=list,
        description="Accepted `aud` values, comma-separated (a token must name one); "
        "required with an issuer, so tokens the issuer made for other services are refused.",
    )
    oauth2_jwks_url: str | None = Field(
        None,
        description="The issuer's signing keys (JWKS); default: the `jwks_uri` of "
        "ISSUER/.well-known/openid-configuration. HTTPS (HTTP only on loopback).",
    )
    oauth2_algorithms: CommaList = Field(
        default_factory=lambda: list(ASYMMETRIC_ALGORITHMS),
        description="Signature algorithms accepted, comma-separated; asymmetric only "
        f"({', '.join(ASYMMETRIC_ALGORITHMS)}): never `none`, never HS*.",
    )
    oauth2_leeway_s: float = Field(
        30.0, ge=0, le=300, description="Clock skew allowed when checking exp, nbf and iat."
    )
    oauth2_name_claim: str = Field(
        "sub",
        min_length=1,
        description="Claim naming the principal (a job's `submitted_by`), e.g. "
        "`preferred_username` or `email`; `sub` when a token lacks it. Ownership keys on "
        "`sub` whatever this says.",
    )
    oauth2_scope_claim: str = Field(
        "scope",
        min_length=1,
        description="Claim holding the scopes: a space-separated string or a list. A dotted "
        "name not found as such reaches into nested claims (`realm_access.roles`).",
    )
    oauth2_scope_prefix: str = Field(
        "",
        description="Prefix of this service's scopes in that claim, e.g. `zyra:` to read "
        "`zyra:run` as `run`; values without it are ignored.",
    )
    oauth2_jwks_cache_s: float = Field(
        600.0, ge=1, description="How long fetched signing keys are used before a refetch."
    )
    oauth2_jwks_refetch_interval_s: float = Field(
        30.0,
        ge=1,
        description="Least time between two JWKS fetches: a token naming an unknown key "
        "(`kid`, as after a key rotation) makes a refetch at most this often.",
    )

    @field_validator("run_memory_limit_mb")
    @classmethod
    def _enough_to_start(cls, value: int) -> int:
        if 0 < value < 64:
            raise ValueError("must be 0 (no limit) or at least 64: Python itself needs that")
        return value

    @field_validator("oauth2_issuer", "oauth2_jwks_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("oauth2_algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: list[str]) -> list[str]:
        refused = [a for a in algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if refused:
            raise ValueError(
                f"algorithms {refused} are not accepted; accepted: "
                f"{', '.join(ASYMMETRIC_ALGORITHMS)} (never none or HS*: the issuer's keys "
                "are public)"
            )
        if not algorithms:
            raise ValueError("name at least one algorithm, e.g. RS256")
        return algorithms

    @model_validator(mode="after")
    def _oauth2_complete(self) -> Settings:
        if self.oauth2_issuer is None:
            if self.oauth2_audience or self.oauth2_jwks_url:
                raise ValueError(
                    "ZYRA_OAUTH2_AUDIENCE or ZYRA_OAUTH2_JWKS_URL is set without "
                    "ZYRA_OAUTH2_ISSUER; set the issuer too (or neither)"
                )
            return self
        if not self.oauth2_audience:
            raise ValueError(
                "ZYRA_OAUTH2_ISSUER needs ZYRA_OAUTH2_AUDIENCE: the `aud` this service's "
                "tokens carry (e.g. its client id or API identifier)"
            )
        for name, url in (("ISSUER", self.oauth2_issuer), ("JWKS_URL", self.oauth2_jwks_url)):
            problem = insecure_url_problem(url) if url else None
            if problem:
                raise ValueError(f"ZYRA_OAUTH2_{name}: {problem}")
        return self

    @property
    def oauth2(self) -> OAuth2Config | None:
        if self.oauth2_issuer is None:
            return None
        return OAuth2Config(
            issuer=self.oauth2_issuer,
            audiences=tuple(self.oauth2_audience),
            jwks_url=self.oauth2_jwks_url,
            algorithms=tuple(self.oauth2_algorithms),
            leeway_s=self.oauth2_leeway_s,
            name_claim=self.oauth2_name_claim,
            scope_claim=self.oauth2_scope_claim,
            scope_prefix=self.oauth2_scope_prefix,
            jwks_cache_s=self.oauth2_jwks_cache_s,
            jwks_refetch_interval_s=self.oauth2_jwks_refetch_interval_s,
        )

    # --- where things live --------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=lambda: DEFAULT_DATA_DIR,
        description="Root of the embedded job store, results and working directories.",
    )
    work_dir: Path = Field(
        default_factory=lambda data: data.get("data_dir", DEFAULT_DATA_DIR) / "work",
        description="Where each job gets its folders; default DATA_DIR/work. With a sync "
        "executor, a volume it shares with the API, at the same path in both containers.",
    )
    sync_executor_socket: Path | None = Field(
        None,
        description="Unix socket of the sync executor (`python -m runner.zygote --listen "
        "PATH`, a container of its own: no secrets, another uid in the pod's group). Sync "
        "runs fork there instead of in a template process of the API; unset: the API's own.",
    )
    template_processes: int = Field(
        default_factory=default_template_processes,
        ge=1,
        le=64,
        description="Template processes of the API's own that fork sync runs (and, with "
        "the local backend, runners); each request goes to the least busy. Each holds a "
        "copy of Zyra's stack (a few hundred MB); one forks about 80 runs a second. "
        "Not with ZYRA_SYNC_EXECUTOR_SOCKET.",
        json_schema_extra={"shown_default": "one per 8 CPUs, at least 1"},
    )

    @model_validator(mode="after")
    def _templates_are_ours(self) -> Settings:
        if self.sync_executor_socket is None or "template_processes" not in self.model_fields_set:
            return self
        raise ValueError(
            "ZYRA_TEMPLATE_PROCESSES sets the API's own template processes, and "
            "ZYRA_SYNC_EXECUTOR_SOCKET replaces them with a sync executor (one process, "
            "shared by every API replica): give one or the other"
        )

    backend: Literal["local", "kubernetes"] = Field(
        "local", description="Where async runs execute."
    )
    k8s: KubernetesSettings = Field(
        default_factory=KubernetesSettings,
        description="The Kubernetes backend: ZYRA_K8S__NAMESPACE, ZYRA_K8S__IMAGE, "
        "ZYRA_K8S__KUBECONFIG, ZYRA_K8S__DEADLINE_MARGIN_S, …",
    )
    # Earlier names of three k8s fields, still read (ZYRA_K8S__<FIELD> wins); only
    # `_flat_k8s_names` reads them.
    k8s_kubeconfig: Path | None = Field(
        None, exclude=True, description="Earlier name of ZYRA_K8S__KUBECONFIG."
    )
    k8s_pull_failure_timeout_s: float | None = Field(
        None, gt=0, exclude=True, description="Earlier name of ZYRA_K8S__PULL_FAILURE_TIMEOUT_S."
    )
    k8s_log_fallback_after_s: float | None = Field(
        None, gt=0, exclude=True, description="Earlier name of ZYRA_K8S__LOG_FALLBACK_AFTER_S."
    )

    @model_validator(mode="after")
    def _flat_k8s_names(self) -> Settings:
        flat = {
            "kubeconfig": self.k8s_kubeconfig,
            "pull_failure_timeout_s": self.k8s_pull_failure_timeout_s,
            "log_fallback_after_s": self.k8s_log_fallback_after_s,
        }
        update = {
            name: value
            for name, value in flat.items()
            if value is not None and name not in self.k8s.model_fields_set
        }
        if update:
            self.k8s = self.k8s.model_copy(update=update)
        return self

    redis_url: str | None = Field(
        None, description="Redis for job records and event streams; unset: embedded store."
    )
    redis_acl_sync_s: float = Field(
        5.0,
        gt=0,
        description="How often the per-job Redis users of running jobs are checked and "
        "re-created if Redis lost them (a restart: ACL users live in memory only).",
    )
    runner_credentials_margin_s: int = Field(
        900,
        ge=60,
        description="How long a runner's presigned S3 URLs outlive its timeout: time to "
        "fetch inputs and store outputs (for a runner Job, on top of "
        "ZYRA_K8S__DEADLINE_MARGIN_S).",
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
    max_request_body_mb: int = Field(
        8,
        ge=1,
        description="Largest request body accepted on any route but `POST /upload` (which "
        "has ZYRA_MAX_UPLOAD_MB): 413 above, refused as soon as it is declared or crosses it.",
    )
    max_arg_length: int = Field(
        1 << 20,
        ge=1,
        description="Characters one string of a request's `args` may have (each item of a "
        "list, each string of an inline pipeline): 422 naming the argument above.",
    )
    upload_ttl_s: int = Field(7 * 86400, ge=60, description="Uploads are deleted after this.")
    result_ttl_s: int = Field(
        7 * 86400,
        ge=60,
        description="Job outputs are deleted this long after they were stored; downloads "
        "then answer 410 Gone.",
    )
    job_ttl_s: int = Field(
        default_factory=lambda data: data.get("result_ttl_s", 7 * 86400),
        ge=60,
        description="A finished job (record, events, runner log, outputs) is deleted this "
        "long after its `finished_at`; queued and running jobs never are. Default: "
        "ZYRA_RESULT_TTL_S; never below it.",
    )
    cleanup_interval_s: int = Field(
        3600, ge=1, description="How often expired uploads, outputs and jobs are deleted."
    )

    @model_validator(mode="after")
    def _jobs_outlive_their_outputs(self) -> Settings:
        if self.job_ttl_s < self.result_ttl_s:
            raise ValueError(
                f"ZYRA_JOB_TTL_S ({self.job_ttl_s}) is below ZYRA_RESULT_TTL_S "
                f"({self.result_ttl_s}): a job's record must outlive its outputs, so that a "
                "download can say they expired; raise ZYRA_JOB_TTL_S or lower ZYRA_RESULT_TTL_S"
            )
        return self

    @property
    def event_ttl_s(self) -> int:
        """When a Redis event stream expires on its own after its last event: a backstop
        for the retention sweep, and never under a job still running."""
        return self.job_ttl_s + math.ceil(self.async_timeout_max_s)

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
    pipeline_env_allow: CommaList = Field(
        default_factory=list,
        description="Environment variables a `run` pipeline may reference (`$NAME`, "
        "`${NAME:-default}`), expanded from the command's environment; any other "
        "reference is refused.",
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
    run_memory_limit_mb: int = Field(
        8192,
        ge=0,
        description="Address-space limit of one command (RLIMIT_AS), in MiB; 0: none. "
        "Below 64 Python itself cannot start.",
    )
    run_file_size_limit_mb: int = Field(
        8192,
        ge=0,
        description="Largest file one command may write (RLIMIT_FSIZE), in MiB; 0: none.",
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
    run_max_log_mb: int = Field(
        32,
        ge=0,
        description="Text one command may print (stdout and stderr together); "
        "beyond it the job fails with LogLimitExceeded. 0: no limit.",
    )
    run_max_disk_mb: int = Field(
        8192,
        ge=0,
        description="Disk one command may fill (its folders and binary stdout); "
        "beyond it the job fails with DiskQuotaExceeded. 0: no limit.",
    )

    # --- confinement (docs/security.md) -------------------------------------------------
    sandbox: SandboxMode = Field(
        SandboxMode.BEST_EFFORT,
        description="required: refuse to start (or fail the job) when commands cannot be "
        "confined; best-effort: confine with what the kernel offers; off: do not confine.",
    )
    sandbox_uid: int = Field(65534, ge=1, description="uid commands run as when started as root.")
    sandbox_gid: int = Field(65534, ge=1, description="gid commands run as when started as root.")
    sandbox_tool_paths: CommaList = Field(
        default_factory=list,
        description="Software commands may read and run besides Python's and the system's, "
        "e.g. a folder with wgrib2 or map data (ZYRA_ALLOWED_PATH_PREFIXES are data: read only).",
    )

    # --- outbound requests (docs/security.md) ------------------------------------------
    outbound_allow: CommaList = Field(
        default_factory=list,
        description="Destinations callbacks and URL arguments may reach besides public "
        "addresses: host names (`n8n.automation.svc.cluster.local`), `*.suffix` patterns "
        "(a name listed either way is trusted with whatever it resolves to) and addresses "
        "or CIDRs (`10.42.0.0/16`, `127.0.0.1`). Otherwise loopback, link-local (cloud "
        "metadata), private, shared, multicast and reserved addresses, and names such as "
        "`localhost`, single-label names, `*.svc`, `*.cluster.local` are refused.",
    )

    @field_validator("outbound_allow")
    @classmethod
    def _valid_outbound_entries(cls, entries: list[str]) -> list[str]:
        OutboundPolicy.from_entries(entries)  # raises ValueError naming a bad entry
        return entries

    @property
    def outbound_policy(self) -> OutboundPolicy:
        return OutboundPolicy.from_entries(self.outbound_allow)

    # --- callbacks (docs/reference.md, "Callbacks") ------------------------------------
    callback_retry_window_s: float = Field(
        900,
        gt=0,
        description="How long a callback is retried after the job ended: network errors, "
        "5xx, 408, 409, 425 and 429 (a receiver restarting, an n8n execution not yet at "
        "its Wait node); then the delivery is `failed`.",
    )
    callback_not_found_window_s: float = Field(
        120,
        ge=0,
        description="How long a 404 is retried too (the receiver may not be listening "
        "yet); after it a 404 is final, as other 4xx are at once.",
    )
    callback_max_backoff_s: float = Field(
        60,
        gt=0,
        description="Longest wait between two attempts (they start 1 s apart and double; "
        "a Retry-After up to this is honoured).",
    )
    callback_timeout_s: float = Field(
        10, gt=0, le=120, description="Seconds one attempt may take before it counts as failed."
    )
    max_metadata_bytes: int = Field(
        4096,
        ge=0,
        description="Largest `metadata` object a run request may carry (as compact JSON); "
        "it is echoed in every answer about the job. 0: none accepted.",
    )
    max_job_wait_s: float = Field(
        60,
        ge=0,
        description="Longest `GET /jobs/{id}?wait=` long-poll; keep it under the idle "
        "timeout of proxies in front (nginx: 60 s).",
    )

    # --- limits (docs/security.md, "Limits and fair shares") ----------------------------
    rate_limit_window_s: int = Field(
        60,
        ge=1,
        le=86400,
        description="The window every rate limit counts in: at most N requests in any "
        "WINDOW seconds (a moving window).",
    )
    rate_limit_per_principal: int = Field(
        600,
        ge=0,
        description="Requests one principal may make per window, on any route but the "
        "health probes; beyond it 429 with Retry-After. 0: no limit.",
    )
    rate_limit_sync_runs_per_principal: int = Field(
        60,
        ge=0,
        description="Sync runs (POST /cli/run, mode sync) one principal may start per "
        "window, besides counting as requests. 0: no limit.",
    )
    rate_limit_per_ip: int = Field(
        300,
        ge=0,
        description="Requests without a valid credential (none, a refused one, the docs) "
        "per window from one client address (an IPv6 client's /64); authenticated "
        "requests count against their principal instead. 0: no limit.",
    )
    rate_limit_failed_auth_per_ip: int = Field(
        10,
        ge=0,
        description="Refused credentials (a wrong API key, an invalid token) per window "
        "from one client address; beyond them every request from there gets 429, "
        "whatever it presents, until the window has passed. 0: no limit.",
    )
    max_sync_runs_per_principal: int = Field(
        2,
        ge=0,
        description="Sync runs one principal may have executing at once (across API "
        "processes with Redis); one more gets 429 at once instead of waiting for a slot "
        "of ZYRA_SYNC_CONCURRENCY others need. 0: no cap.",
    )
    max_running_jobs_per_principal: int = Field(
        2,
        ge=0,
        description="Async jobs of one principal at the backend at once (running, or "
        "waiting for a ZYRA_LOCAL_MAX_RUNNING slot; with Kubernetes, Jobs created); its "
        "later jobs wait `queued`, in order, without holding back other principals. "
        "0: no cap.",
    )
    max_streams: int = Field(
        500,
        ge=0,
        description="Event streams (SSE and WebSocket together) one API process keeps open "
        "at once; one more gets 503 with Retry-After (a WebSocket: close 1013). Each holds "
        "a socket: keep it under the process's open-file limit. 0: no limit.",
    )
    max_streams_per_principal: int = Field(
        50,
        ge=0,
        description="Event streams one principal may have open at once in one API process; "
        "one more gets 503 with Retry-After (a WebSocket: close 1013). 0: no limit.",
    )
    fair_share_dispatch_interval_s: float = Field(
        2.0,
        gt=0,
        description="How often waiting jobs are checked for room besides when a job is "
        "submitted or ends: a safety net (jobs another API process queued, a backend "
        "that could not take a job).",
    )
    trusted_proxies: CommaList = Field(
        default_factory=list,
        description="Proxies (addresses or CIDRs, e.g. `10.42.0.0/16` for an ingress "
        "controller's pods) whose X-Forwarded-For is believed: a request from one counts "
        "against the right-most address there that is not itself a trusted proxy. Empty: "
        "the connection's peer is the client, whatever the headers say.",
    )
    # --- logs and traces (api/observability) ---------------------------------------------
    log_format: Literal["json", "text"] = Field(
        "text",
        description="`json`: one JSON object per line (timestamp, level, logger, message, "
        "job_id, principal, request_id, exception, trace_id) from the API and its runners, "
        "for a log collector; `text`: lines for a human's terminal. The Helm chart sets "
        "`json`. Traces need no setting here: they are exported when "
        "`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.",
    )
    # --- metrics (api/observability/metrics.py) -------------------------------------------
    metrics_token: SecretStr | None = Field(
        None,
        description="Token Prometheus sends as `Authorization: Bearer <token>` to read "
        "`GET /metrics`: a long random value (the Helm chart generates 32 characters). "
        "Unset or blank: only a principal with the `admin` scope may read it (or anyone, "
        "with ZYRA_METRICS_PUBLIC).",
    )
    metrics_public: bool = Field(
        False,
        description="`true`: `GET /metrics` answers without any credential. Only where "
        "something else (a NetworkPolicy, a private listener) keeps others from it.",
    )

    @field_validator("metrics_token")
    @classmethod
    def _blank_metrics_token_is_none(cls, token: SecretStr | None) -> SecretStr | None:
        """A blank token is no token (else `Bearer ` with nothing would match it)."""
        return token if token is not None and token.get_secret_value().strip() else None

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxies(cls, entries: list[str]) -> list[str]:
        parse_networks(entries)  # raises ValueError naming a bad entry
        return entries

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

    @model_validator(mode="after")
    def _no_readable_secrets(self) -> Settings:
        """A folder commands may read must not hold the service's own files."""
        for setting, paths in (
            ("ZYRA_ALLOWED_PATH_PREFIXES", self.allowed_path_prefixes),
            ("ZYRA_SANDBOX_TOOL_PATHS", self.sandbox_tool_paths),
        ):
            for path in paths:
                for private in self.private_paths:
                    if _holds(path, private):
                        raise ValueError(
                            f"{setting} names {path}, which holds {private} (the service's "
                            "own files); name a folder that holds only data"
                        )
        return self

    @property
    def private_paths(self) -> list[Path]:
        """What no command may ever read: stores, keys, credentials."""
        paths = [self.data_dir, self.work_dir, self.local_storage_dir]  # work: other jobs'
        paths += [p for p in (self.api_keys_file, self.k8s.kubeconfig) if p is not None]
        return paths

    @property
    def sandbox_policy(self) -> SandboxPolicy:
        return SandboxPolicy(
            mode=self.sandbox,
            read_paths=list(self.allowed_path_prefixes),
            tool_paths=list(self.sandbox_tool_paths),
            private_paths=[str(p) for p in self.private_paths],
            uid=self.sandbox_uid,
            gid=self.sandbox_gid,
        )

    @property
    def run_quotas(self) -> RunQuotas:
        return RunQuotas(
            log_bytes=self.run_max_log_mb * MB if self.run_max_log_mb else None,
            disk_bytes=self.run_max_disk_mb * MB if self.run_max_disk_mb else None,
        )

    @property
    def local_storage_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "storage"

    @property
    def storage_env(self) -> dict[str, str]:
        """What a runner needs to reach the same storage (no credentials: each job
        gets its own, runner/credentials.py)."""
        env = {"ZYRA_STORAGE": self.storage, "ZYRA_STORAGE_DIR": str(self.local_storage_dir)}
        for name, value in (
            ("ZYRA_S3_BUCKET", self.s3_bucket),
            ("ZYRA_S3_ENDPOINT_URL", self.s3_endpoint_url),
            ("ZYRA_S3_PUBLIC_ENDPOINT_URL", self.s3_public_endpoint_url),
        ):
            if value:
                env[name] = value
        return env


def _within(inner: PurePosixPath, outer: PurePosixPath) -> bool:
    # Paths inside a pod: compared as written, never resolved on the API's host.
    return inner == outer or outer in inner.parents


def _holds(outer: str | Path, inner: str | Path) -> bool:
    outer_path, inner_path = Path(outer).resolve(), Path(inner).resolve()
    return inner_path == outer_path or outer_path in inner_path.parents
