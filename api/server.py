"""The application factory: `create_app(settings)`; services are built once in the lifespan."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from api.backends.base import Backend, RunnerReports
from api.backends.local import LocalBackend
from api.command_env import command_environment
from api.errors import install_error_handlers
from api.jobs.callback_outbox import CallbackOutbox, RetryRules
from api.jobs.downloads import Downloads
from api.jobs.records import JobRecord
from api.jobs.redis_store import RedisJobStore
from api.jobs.runner_credentials import CredentialKeeper, RedisJobUsers, RunnerCredentials
from api.jobs.service import JobService
from api.jobs.store import JobStore, SqliteJobStore
from api.limits.admission import RequestLimits
from api.limits.errors import install_limit_error_handler
from api.limits.fair_share import FairShareQueue, RedisFairShareQueue, SqliteFairShareQueue
from api.limits.middleware import RateLimitMiddleware
from api.limits.rates import RateLimiter
from api.limits.request_size import RequestBodyLimitMiddleware
from api.limits.sync_slots import LocalSyncRunSlots, RedisSyncRunSlots, SyncRunSlots
from api.method_not_allowed import install_method_not_allowed_handler
from api.observability import tracing as api_tracing
from api.observability.log_context import RequestIdMiddleware
from api.observability.metrics import observe_sandbox
from api.openapi import install_openapi
from api.retention import RetentionCleaner
from api.routers import cli, dashboard, files, health, jobs, metrics, stream
from api.schemas import JobView
from api.security.api_keys import ApiKeyRing
from api.security.authentication import Authenticator, install_auth_error_handler
from api.security.log_redaction import install_log_redaction
from api.security.oauth2 import TokenVerifier
from api.settings import Settings
from api.streams.follow import JobStreams
from api.uploads import UploadService
from runner.catalog import CommandCatalog, ExposurePolicy
from runner.dependencies import DependencyUnavailableError
from runner.events import EventLog, RedisEventLog, SqliteEventLog
from runner.execute import CommandExecutor, Zygote
from runner.quotas import MB
from runner.sandbox import SandboxReport, make_non_dumpable
from runner.secret_args import mask_args
from runner.storage import S3Storage, make_storage
from runner.template_pool import TemplatePool

log = logging.getLogger("zyra.server")
API_VERSION = "0.1.0"


def _unsupported(settings: Settings) -> list[str]:
    """Combinations that cannot work: runner pods share nothing with the API but
    Redis and S3."""
    if settings.backend != "kubernetes":
        return []
    problems = []
    if not settings.redis_url:
        problems.append("ZYRA_BACKEND=kubernetes needs ZYRA_REDIS_URL")
    if settings.storage != "s3":
        problems.append("ZYRA_BACKEND=kubernetes needs ZYRA_STORAGE=s3")
    return problems


def _reconcile_until_done(service: JobService) -> None:
    """Settle jobs an earlier API process left running; wait out a Redis outage."""
    delay = 1.0
    while True:
        try:
            service.reconcile()
            return
        except DependencyUnavailableError as exc:
            log.warning("reconcile postponed: %s", exc)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def build_job_service(
    settings: Settings, catalog: CommandCatalog, zygote: Zygote | TemplatePool
) -> JobService:
    env = command_environment(settings)
    events_db = settings.data_dir / "events.sqlite3"
    store: JobStore
    events: RedisEventLog | SqliteEventLog
    redis_users = None
    if settings.redis_url:
        store = RedisJobStore(settings.redis_url)
        # Its own expiry backs up the retention sweep (api/retention.py).
        events = RedisEventLog(settings.redis_url, ttl_s=settings.event_ttl_s)
        redis_users = RedisJobUsers(settings.redis_url, events)
    else:
        store = SqliteJobStore(settings.data_dir / "jobs.sqlite3")
        events = SqliteEventLog(events_db)
    storage = make_storage(
        settings.storage,
        settings.local_storage_dir,
        settings.s3_bucket,
        settings.s3_endpoint_url,
        settings.s3_public_endpoint_url,
    )
    if isinstance(storage, S3Storage):
        try:
            storage.ensure_bucket()
        except Exception as exc:  # the operator may have created it without granting this
            log.warning("could not check or create bucket %s: %s", settings.s3_bucket, exc)
    runner_env = {**env, **settings.storage_env, "ZYRA_EVENT_DB": str(events_db),
                  "ZYRA_LOG_FORMAT": settings.log_format}  # fmt: skip
    _warn_if_one_principal_takes_every_runner(settings)
    return JobService(
        settings,
        catalog,
        store,
        events,
        storage,
        CommandExecutor(zygote, settings.kill_grace_s),
        env,
        # Runners get credentials of their own job (runner/credentials.py), never ours.
        RunnerCredentials(redis_users, storage if isinstance(storage, S3Storage) else None),
        backend=_backend(settings, runner_env, events, zygote),
        fair_share_queue=_fair_share_queue(settings),
        principal_sync_slots=_principal_sync_slots(settings),
        callbacks=callback_outbox(settings, store),
    )


def _callback_body(record: JobRecord) -> bytes:
    """A callback's body: the job as `GET /jobs/{id}` shows it, secret arguments masked
    (the receiver need not be its owner)."""
    masked = record.model_copy(update={"args": mask_args(record.args)})
    return JobView.from_record(masked).model_dump_json().encode()


def callback_outbox(settings: Settings, store: JobStore) -> CallbackOutbox:
    rules = RetryRules(
        settings.callback_retry_window_s,
        settings.callback_not_found_window_s,
        settings.callback_max_backoff_s,
    )
    return CallbackOutbox(
        store,
        settings.outbound_policy,
        rules,
        settings.callback_timeout_s,
        _callback_body,
        user_agent=f"zyra-orchestrator/{API_VERSION}",
    )


def _backend(
    settings: Settings,
    runner_env: dict[str, str],
    events: EventLog,
    zygote: Zygote | TemplatePool,
) -> Callable[[RunnerReports], Backend]:
    """What builds the backend of ZYRA_BACKEND, once the service it reports to exists."""
    if settings.backend == "kubernetes":
        return lambda reports: _kubernetes_backend(settings, reports, events)
    return lambda reports: LocalBackend(
        settings.work_dir,
        runner_env,
        reports,
        settings.kill_grace_s,
        settings.local_max_running,
        # Runners forked warm from the API's own template process (a sync executor in
        # another container does not start runners).
        forker=zygote if zygote.starts_runners else None,
    )


def _fair_share_queue(settings: Settings) -> FairShareQueue:
    """Where each principal's async jobs wait for room under its cap (api/limits); in
    Redis when there is one, so that the caps hold across API processes."""
    if settings.redis_url:
        return RedisFairShareQueue(settings.redis_url)
    return SqliteFairShareQueue(settings.data_dir / "fair_share.sqlite3")


def _principal_sync_slots(settings: Settings) -> SyncRunSlots:
    """Each principal's sync runs executing; in Redis too when there is one."""
    if settings.redis_url:
        return RedisSyncRunSlots(settings.redis_url, settings.max_sync_runs_per_principal)
    return LocalSyncRunSlots(settings.max_sync_runs_per_principal)


def _warn_if_one_principal_takes_every_runner(settings: Settings) -> None:
    cap = settings.max_running_jobs_per_principal
    if settings.backend == "local" and not 0 < cap < settings.local_max_running:
        log.warning(
            "ZYRA_MAX_RUNNING_JOBS_PER_PRINCIPAL=%d and ZYRA_LOCAL_MAX_RUNNING=%d: one "
            "principal can take every runner slot; a cap below the slots keeps room for others",
            cap,
            settings.local_max_running,
        )


def _kubernetes_backend(settings: Settings, reports: RunnerReports, events: EventLog) -> Backend:
    from kubernetes import client, config

    from api.backends.kubernetes import KubernetesBackend

    if settings.k8s.kubeconfig:
        api_client = config.new_client_from_config(config_file=str(settings.k8s.kubeconfig))
    else:
        config.load_incluster_config()
        api_client = client.ApiClient()
    plain = {**settings.k8s.plain_env, **{k: v for k, v in settings.storage_env.items()
                                          if k != "ZYRA_STORAGE_DIR"},
             "ZYRA_LOG_FORMAT": settings.log_format}  # fmt: skip
    k8s = settings.k8s.model_copy(update={"plain_env": plain})
    return KubernetesBackend(k8s, api_client, reports, events=events)


def _make_private(settings: Settings, sandbox: SandboxReport) -> None:
    """The data dir is the service's alone. Commands that run as another uid may pass
    through it (not list it) to their own folders under work/; every file in it is
    created 0600 (umask) and every job folder 0700. A sync executor (another uid in
    the pod's group) passes through the work dir as the group: 2710, so that job
    folders inherit the group (runner/workspace.py shares them)."""
    traverse = 0o711 if sandbox.drop_to_uid is not None else 0o700
    modes = {settings.data_dir: traverse, settings.work_dir: traverse}
    if settings.sync_executor_socket is not None:
        modes[settings.work_dir] = 0o2710 | traverse
        if settings.data_dir in settings.work_dir.parents:
            modes[settings.data_dir] = 0o010 | traverse
    for folder, mode in modes.items():
        folder.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(folder, mode)
        except PermissionError as exc:  # a mount point the service does not own
            log.warning("could not make %s private: %s", folder, exc)


def _templates(settings: Settings) -> Zygote | TemplatePool:
    """The sync executor's client, or the API's own template processes."""
    if settings.sync_executor_socket is not None:
        env = command_environment(settings)
        return Zygote(env, settings.sandbox_policy, socket_path=settings.sync_executor_socket)
    return TemplatePool([
        Zygote(command_environment(settings), settings.sandbox_policy)
        for _ in range(settings.template_processes)
    ])  # fmt: skip


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    unsupported = _unsupported(settings)
    if unsupported:
        raise RuntimeError("; ".join(unsupported))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Our environment holds the keys: no other process of our uid may read it.
        make_non_dumpable()
        # Here, not in create_app: in each Gunicorn worker, after its fork.
        api_tracing.start()
        os.umask(0o077)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        policy = ExposurePolicy(tuple(settings.stages), tuple(settings.commands_deny))
        catalog = await anyio.to_thread.run_sync(CommandCatalog.from_zyra, policy)
        zygote = _templates(settings)
        # ZYRA_SANDBOX=required on a machine that cannot confine, or a sync executor that
        # does not answer within the start timeout: the start fails here.
        await anyio.to_thread.run_sync(zygote.start)
        if settings.sync_executor_socket is not None:
            log.info("sync runs fork in the sync executor at %s", settings.sync_executor_socket)
        assert zygote.sandbox is not None
        _make_private(settings, zygote.sandbox)
        for problem in zygote.sandbox.problems:
            log.warning("sandbox (%s): %s", settings.sandbox.value, problem)
        service = build_job_service(settings, catalog, zygote)
        # Event streams wait on one watcher per process, and end on SIGTERM (api/streams).
        app.state.streams = streams = JobStreams.start(service.events, service.store, settings)
        service.events = streams.notifying(service.events)  # our appends wake readers at once
        app.state.sandbox = zygote.sandbox
        observe_sandbox(zygote.sandbox)  # zyra_sandbox_level
        app.state.sync_executor = zygote
        app.state.settings = settings
        app.state.catalog = catalog
        app.state.key_ring = ApiKeyRing.from_sources(
            settings.api_keys, settings.api_keys_file, settings.api_key
        )
        oauth2 = settings.oauth2
        app.state.authenticator = Authenticator(
            app.state.key_ring, TokenVerifier(oauth2) if oauth2 else None
        )
        if oauth2:
            log.info("OAuth2 bearer tokens of %s accepted", oauth2.issuer)
        # Counted in Redis when there is one: every worker and replica shares the counts.
        app.state.request_limits = RequestLimits(settings, RateLimiter(settings.redis_url))
        install_log_redaction()  # whatever server runs us: no ?api_key= in its logs
        app.state.job_service = service
        threading.Thread(target=_reconcile_until_done, args=(service,), daemon=True).start()
        service.fair_share.start()
        service.callbacks.start()
        app.state.downloads = Downloads(service.get, service.store, service.storage, settings)
        app.state.uploads = UploadService(
            service.storage, settings.data_dir / "spool", settings.max_upload_mb * MB
        )
        cleaner = RetentionCleaner(settings, storage=service.storage, store=service.store,
                                   events=service.events, backend=service.backend)  # fmt: skip
        app.state.retention = cleaner
        cleaner.start()
        keeper = CredentialKeeper(service.sync_runner_users, settings.redis_acl_sync_s)
        if settings.redis_url:
            keeper.start()
        try:
            yield
        finally:
            await streams.close()
            service.fair_share.stop()
            service.callbacks.stop()
            keeper.stop()
            cleaner.stop()
            service.backend.close()
            await anyio.to_thread.run_sync(service.folder_removal.close)
            await anyio.to_thread.run_sync(zygote.close)
            await anyio.to_thread.run_sync(api_tracing.stop)  # what is left is exported

    app = FastAPI(
        title="zyra-orchestrator",
        summary="Zyra's command line as a service: acquire, process, visualize, disseminate, run.",
        version=API_VERSION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_auth_error_handler(app)
    install_limit_error_handler(app)
    install_method_not_allowed_handler(app)
    app.add_middleware(RequestBodyLimitMiddleware)  # inside the rate limits: counted first
    app.add_middleware(RateLimitMiddleware)
    for router in (health.router, cli.router, jobs.router, files.router, stream.router,
                   metrics.router):  # fmt: skip
        app.include_router(router)
    app.include_router(dashboard.router)  # the page at /ui, outside the OpenAPI schema
    install_openapi(app, settings)
    app.add_middleware(RequestIdMiddleware)  # outermost: every line of a request has its id
    api_tracing.instrument_app(app)  # only when an OTLP endpoint is configured
    return app
